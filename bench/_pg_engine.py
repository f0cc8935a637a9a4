"""The PostgreSQL part of bench/engine.py: sagaway on PostgreSQL, DBOS on the same server,
the raw-commit floor, scaling with worker processes, and wake-up latencies.

Every measurement runs in a fresh child process (see engine.py's `run_child`) against the
server named by $SAGAWAY_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test),
in a schema (sagaway, the floor) or database (DBOS: dbos_bench) of its own, dropped after.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("SAGAWAY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
DBOS_DATABASE = "dbos_bench"
STEPS = 5

WORKER_APP = """
import os
from sagaway import App
app = App(os.environ["SAGAWAY_DB"], concurrency=int(os.environ.get("BENCH_CONCURRENCY", "32")))

@app.step
def noop(x):
    return x

@app.saga()
def five(ctx, x):
    for _ in range(5):
        noop(x)
    return x
"""


def _admin(database: str | None = None):
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(SERVER)
    if database:
        params["dbname"] = database
    return psycopg.connect(make_conninfo(**params), autocommit=True)


class _Schema:
    """A fresh schema on the server, dropped on exit; `url` is sagaway's URL for it."""

    def __enter__(self) -> _Schema:
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.url = f"{SERVER}{'&' if '?' in SERVER else '?'}schema={self.name}"
        return self

    def __exit__(self, *exc: object) -> None:
        with _admin() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")


def server_problem() -> str | None:
    """Why the benchmark server cannot be used, or None."""
    try:
        _admin().close()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip()}"


def server_info() -> str:
    with _admin() as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    return f"PostgreSQL {version} (fsync={fsync}, synchronous_commit={sync})"


def drive(call: Callable[[], object], seconds: float, threads: int) -> float:
    """Call `call()` back to back from `threads` threads for `seconds`; return calls/s."""
    for _ in range(5):
        call()
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def loop(k: int) -> None:
        while time.perf_counter() < stop:
            call()
            done[k] += 1

    start = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / (time.perf_counter() - start)


# --- children ----------------------------------------------------------------------------------
def child_floor(seconds: float, connections: int) -> dict:
    """Single-row INSERT transactions (autocommit), from `connections` connections."""
    import psycopg

    with _Schema() as schema:
        with _admin() as conn:
            conn.execute(f"CREATE SCHEMA {schema.name}")
            conn.execute(f"CREATE TABLE {schema.name}.t (id BIGSERIAL PRIMARY KEY, v TEXT)")
        counts = [0] * connections
        insert = f"INSERT INTO {schema.name}.t (v) VALUES ('0123456789abcdef0123456789abcdef')"
        links = [_admin() for _ in range(connections)]
        barrier = threading.Barrier(connections)

        def loop(k: int) -> None:
            conn: psycopg.Connection = links[k]
            barrier.wait()
            stop = time.perf_counter() + seconds
            while time.perf_counter() < stop:
                conn.execute(insert)
                counts[k] += 1

        start = time.perf_counter()
        threads = [threading.Thread(target=loop, args=(k,)) for k in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rate = sum(counts) / (time.perf_counter() - start)
        for conn in links:
            conn.close()
    return {"commits_per_s": rate}


def child_sagaway(seconds: float, threads: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from sagaway import App

    with _Schema() as schema:
        app = App(schema.url, concurrency=max(32, 2 * threads))

        @app.step
        def noop(x: int) -> int:
            return x

        @app.saga()
        def five(ctx: object, x: int) -> int:
            for _ in range(STEPS):
                noop(x)
            return x

        with app:
            rate = drive(lambda: app.start(five, 1).result(), seconds, threads)
            batches, writes = app.store.commit_stats  # type: ignore[attr-defined]
        app.close()
    return {"workflows_per_s": rate, "writes_per_commit": writes / max(1, batches)}


def child_dbos(seconds: float, threads: int) -> dict:
    import logging
    from importlib import metadata

    from dbos import DBOS, DBOSConfig
    from psycopg.conninfo import conninfo_to_dict

    with _admin("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DBOS_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DBOS_DATABASE}")
    try:
        params = conninfo_to_dict(SERVER)
        params["dbname"] = DBOS_DATABASE
        user, host = params.get("user", "postgres"), params.get("host", "127.0.0.1")
        url = f"postgresql://{user}@{host}:{params.get('port', 5432)}/{DBOS_DATABASE}"
        logging.getLogger("dbos").setLevel(logging.WARNING)
        config: DBOSConfig = {"name": "bench", "system_database_url": url, "log_level": "WARNING"}
        DBOS(config=config)

        @DBOS.step()
        def noop(x: int) -> int:
            return x

        @DBOS.workflow()
        def five(x: int) -> int:
            for _ in range(STEPS):
                noop(x)
            return x

        DBOS.launch()
        rate = drive(lambda: five(1), seconds, threads)
        DBOS.destroy()
    finally:
        with _admin("postgres") as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DBOS_DATABASE} WITH (FORCE)")
    return {"workflows_per_s": rate, "version": metadata.version("dbos")}


def _start_workers(url: str, count: int, work: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "SAGAWAY_DB": url, "PYTHONPATH": f"{work}:{ROOT}"}
    command = [sys.executable, "-m", "sagaway.cli", "worker", "bench_app:app"]
    procs = [
        subprocess.Popen(command, env=env, cwd=work, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    for proc in procs:  # each logs one line once it runs
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if " started: " not in line:
            raise RuntimeError(f"worker did not start: {line}")
        # Keep reading what it logs, so that a full pipe never stalls it.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
    return procs


def child_processes(workers: int, runs: int) -> dict:
    """`runs` sagas started by this (client) process from 16 threads, executed by `workers`
    `sagaway worker` processes: sagas per second from the first start to the last end."""
    sys.path.insert(0, str(ROOT))
    from sagaway import App

    work = Path(tempfile.mkdtemp())
    (work / "bench_app.py").write_text(WORKER_APP)
    with _Schema() as schema:
        client = App(schema.url)

        @client.saga()
        def five(ctx: object, x: int) -> int:
            return x

        client.store  # noqa: B018 - create the schema before the workers race to
        procs = _start_workers(schema.url, workers, work)
        try:
            time.sleep(0.5)  # let the workers settle (pool connections, first polls)
            cpu_before = _cpu(procs)
            start = time.perf_counter()
            per_thread = runs // 16
            threads = [
                threading.Thread(target=lambda: [client.start(five, i) for i in range(per_thread)])
                for _ in range(16)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            total = per_thread * 16
            while client.store.count_runs().get("succeeded", 0) < total:
                time.sleep(0.01)
                if time.perf_counter() - start > 300:
                    raise RuntimeError("the workers did not finish within 300 s")
            elapsed = time.perf_counter() - start
            cpu = {k: v - cpu_before[k] for k, v in _cpu(procs).items()}
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
            client.close()
    cores = os.cpu_count() or 1
    return {
        "workflows_per_s": total / elapsed,
        "runs": total,
        "cpu_ms_per_saga": {k: v / total * 1000 for k, v in cpu.items()},
        "cpu_busy": sum(cpu.values()) / (elapsed * cores),
    }


def _cpu(workers: list[subprocess.Popen]) -> dict[str, float]:
    """CPU seconds used so far by the worker processes, this client process, and every
    PostgreSQL server process (Linux /proc; zeros elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def used(pid: int | str) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    server = 0.0
    for entry in Path("/proc").iterdir() if Path("/proc").exists() else []:
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    server += used(entry.name)
            except OSError:
                continue
    me = os.times()
    return {
        "workers": sum(used(proc.pid) for proc in workers),
        "client": me.user + me.system,
        "postgres": server,
    }


def child_latency(samples: int) -> dict:
    """Wake-up latencies with a worker process polling only as a fallback: how late timers
    (`ctx.sleep`) fire, and how long a run started by another process waits to start."""
    sys.path.insert(0, str(ROOT))
    from sagaway import App

    work = Path(tempfile.mkdtemp())
    stamps = work / "stamps"
    (work / "bench_app.py").write_text(
        WORKER_APP
        + f"""
import time

@app.step
def stamp(kind, key):
    with open({str(stamps)!r}, "a") as f:
        f.write(f"{{kind}} {{key}} {{time.time():.6f}}\\n")

@app.saga()
def timer(ctx, key, seconds):
    ctx.sleep(seconds)
    stamp("timer", key)

@app.saga()
def first(ctx, key):
    stamp("first", key)
"""
    )
    with _Schema() as schema:
        client = App(schema.url)

        @client.saga()
        def timer(ctx: object, key: str, seconds: float) -> None: ...

        @client.saga()
        def first(ctx: object, key: str) -> None: ...

        client.store  # noqa: B018
        procs = _start_workers(schema.url, 1, work)
        try:
            started: dict[str, float] = {}
            timers_by_key = {}
            for i in range(samples):
                timers_by_key[f"t{i}"] = client.start(timer, f"t{i}", 1.5)
                started[f"f{i}"] = time.time()
                client.start(first, f"f{i}")
                time.sleep(0.05)
            deadline = time.time() + 60
            while time.time() < deadline:
                lines = stamps.read_text().splitlines() if stamps.exists() else []
                if len(lines) >= 2 * samples:
                    break
                time.sleep(0.05)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
        timers, firsts = [], []
        for line in lines:
            kind, key, at = line.split()
            if kind == "timer":  # how long after the recorded wake-up time the saga went on
                steps = timers_by_key[key].steps
                wake_at = next(float(s.result) for s in steps if s.kind == "sleep")
                timers.append(float(at) - wake_at)
            else:
                firsts.append(float(at) - started[key])
        client.close()
    return {"timer_late_ms": _spread(timers), "start_ms": _spread(firsts)}


def _spread(values: list[float]) -> dict:
    values = sorted(v * 1000 for v in values)
    return {
        "p50": statistics.median(values),
        "p99": values[min(len(values) - 1, int(len(values) * 0.99))],
        "max": values[-1],
        "n": len(values),
    }


# --- the report ----------------------------------------------------------------------------
def report(run_child: Callable[..., dict], seconds: float, threads: int) -> None:
    """Measure everything in child processes and print the PostgreSQL table."""
    problem = server_problem()
    if problem is not None:
        print(f"\nPostgreSQL: skipped, no server at {SERVER} ({problem})")
        return
    s = str(seconds)
    print(f"\nPostgreSQL: {server_info()} at {SERVER}")
    floor1 = run_child("pg_floor", s, "1")["commits_per_s"]
    floor16 = run_child("pg_floor", s, str(threads))["commits_per_s"]
    ours_seq = run_child("pg_sagaway", s, "1")
    ours = run_child("pg_sagaway", s, str(threads))
    dbos_seq = run_child("pg_dbos", s, "1")
    dbos = run_child("pg_dbos", s, str(threads))
    runs = str(max(800, int(600 * seconds)))
    scaling = {n: run_child("pg_processes", str(n), runs) for n in (1, 2, 4)}
    latency = run_child("pg_latency", "40")
    rows = [
        ("sagaway, in-process worker", "App(postgresql://...)", ours_seq, ours),
        (f"DBOS {dbos['version']}", "system database on the same server", dbos_seq, dbos),
    ]
    print()
    print("| system | setup | sequential | concurrent |")
    print("|---|---|---:|---:|")
    for system, setup, seq, conc in rows:
        print(
            f"| {system} | {setup} | {seq['workflows_per_s']:,.0f} sagas/s | "
            f"{conc['workflows_per_s']:,.0f} sagas/s |"
        )
    for n, result in scaling.items():
        print(
            f"| sagaway, {n} worker process{'es' if n > 1 else ''} | runs started by a client "
            f"process | | {result['workflows_per_s']:,.0f} sagas/s |"
        )
    print(
        f"| floor: single-row INSERT commits | 1 / {threads} connections | "
        f"{floor1:,.0f} commits/s | {floor16:,.0f} commits/s |"
    )
    print()
    seq_x = ours_seq["workflows_per_s"] / dbos_seq["workflows_per_s"]
    conc_x = ours["workflows_per_s"] / dbos["workflows_per_s"]
    target = "met" if conc_x >= 10 else "NOT met"
    print(
        f"sagaway / DBOS on the same server: {seq_x:.1f}x sequential, {conc_x:.1f}x "
        f"concurrent (target >= 10x concurrent: {target}); sagaway wrote "
        f"{ours['writes_per_commit']:.1f} checkpoints per transaction when concurrent"
    )
    used = ours_seq["workflows_per_s"] * 6
    print(
        f"sequential sagaway commits {used:,.0f} transactions/s (6 per saga) against a floor "
        f"of {floor1:,.0f} single-row commits/s on one connection"
    )
    for n, result in scaling.items():
        ms = result["cpu_ms_per_saga"]
        print(
            f"{n} worker process{'es' if n > 1 else ''}: CPU {result['cpu_busy']:.0%} busy "
            f"(all {os.cpu_count()} cores); CPU per saga: workers {ms['workers']:.2f} ms, "
            f"client {ms['client']:.2f} ms, PostgreSQL {ms['postgres']:.2f} ms"
        )
    t, f = latency["timer_late_ms"], latency["start_ms"]
    met = "met" if t["p99"] < 100 else "NOT met"
    print(
        f"timers (ctx.sleep, 1.5 s) fired late by p50 {t['p50']:.1f} ms, p99 {t['p99']:.1f} ms, "
        f"max {t['max']:.1f} ms over {t['n']} timers (target < 100 ms: {met}); a run started "
        f"by another process began after p50 {f['p50']:.1f} ms, p99 {f['p99']:.1f} ms "
        "(LISTEN/NOTIFY; the worker's fallback poll is 1 s)"
    )
