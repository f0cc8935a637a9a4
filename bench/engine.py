"""Saga engine throughput: sagaway vs DBOS Transact vs the hardware floor, side by side.

Workload: a five-step saga (workflow) whose steps do nothing, so what is measured is the
engine and its durable writes. Each system runs for a fixed time, sequentially (one saga at
a time) and concurrently (16 client threads, each starting a saga and waiting for its
result, back to back). Every measurement runs in a fresh child process.

- floor: raw SQLite commits per second (one single-row INSERT per transaction), WAL, the
  same `synchronous` setting: the most any engine can commit on this disk.
- sagaway: `App("sqlite:///...?synchronous=...")` with an in-process worker.
- DBOS: `dbos` from PyPI with a SQLite system database, once as configured out of the box
  (rollback journal, synchronous=FULL) and once given the same WAL + synchronous settings.

Also measured: the per-step engine overhead (a 40-step saga on NORMAL: time between
consecutive step bodies, p50/p99), with tracing off and on (`sagaway.otel`, the SDK's batch
processor, spans dropped by the exporter), and recovery (1,000 runs in flight in a worker process
that is SIGKILLed: time until a new worker process has finished them all).

PostgreSQL (`postgres` in --only): the same five-step saga with sagaway on PostgreSQL, DBOS
with its system database on the same server, the raw-commit floor (single-row INSERT
transactions from 1 and 16 connections), throughput with 1, 2 and 4 `sagaway worker`
processes executing runs a client process starts, and wake-up latencies (see
bench/_pg_engine.py; server: $SAGAWAY_BENCH_POSTGRES, default
postgresql://postgres@127.0.0.1:5432/test; skipped with a note when unreachable).

    python bench/engine.py                 # everything, ~5 minutes
    python bench/engine.py --seconds 2     # shorter runs
    python bench/engine.py --only sagaway,floor
    python bench/engine.py --only postgres
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _child  # one measurement in a fresh process
import _pg_engine as pg  # the PostgreSQL half of this benchmark, next to this file

ROOT = Path(__file__).resolve().parent.parent
STEPS = 5
THREADS = 16


# --- children: each prints one JSON line ---------------------------------------------------
def child_floor(sync: str, seconds: float) -> dict:
    import sqlite3

    path = Path(tempfile.mkdtemp()) / "floor.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES ('0123456789abcdef0123456789abcdef')")
        conn.execute("COMMIT")
        n += 1
    return {"commits_per_s": n / (time.perf_counter() - start)}


def child_sagaway(sync: str, seconds: float, threads: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from sagaway import App

    path = Path(tempfile.mkdtemp()) / "sagaway.db"
    app = App(f"sqlite:///{path}?synchronous={sync}", concurrency=max(32, 2 * threads))

    @app.step
    def noop(x: int) -> int:
        return x

    @app.saga()
    def five(ctx: object, x: int) -> int:
        for _ in range(STEPS):
            noop(x)
        return x

    with app:
        rate = pg.drive(lambda: app.start(five, 1).result(), seconds, threads)
        batches, writes = app.store.commit_stats  # type: ignore[attr-defined]
    app.close()
    return {"workflows_per_s": rate, "writes_per_commit": writes / max(1, batches)}


def child_overhead(seconds: float, traced: bool) -> dict:
    sys.path.insert(0, str(ROOT))
    from sagaway import App

    path = Path(tempfile.mkdtemp()) / "overhead.db"
    app = App(f"sqlite:///{path}?synchronous=NORMAL")
    if traced:
        # The OpenTelemetry SDK as deployed (a batch processor), its exporter dropping spans:
        # what is measured is making them.
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
        from opentelemetry.sdk.trace.export import SpanExportResult as Result

        from sagaway.otel import instrument

        class Dropped(SpanExporter):
            def export(self, spans: object) -> Result:
                return Result.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        instrument(app, provider)
    stamps: list[float] = []

    @app.step
    def mark() -> None:
        stamps.append(time.perf_counter())

    @app.saga()
    def forty(ctx: object) -> None:
        for _ in range(40):
            mark()

    gaps: list[float] = []
    with app:
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            stamps.clear()
            app.start(forty).result()
            gaps += [b - a for a, b in itertools.pairwise(stamps)]
    app.close()
    gaps.sort()
    return {
        "step_p50_us": gaps[len(gaps) // 2] * 1e6,
        "step_p99_us": gaps[int(len(gaps) * 0.99)] * 1e6,
        "steps": len(gaps),
    }


def child_dbos(journal: str, sync: str, seconds: float, threads: int) -> dict:
    import logging

    import sqlalchemy as sa
    from dbos import DBOS, DBOSConfig

    logging.getLogger("dbos").setLevel(logging.WARNING)
    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'dbos.db'}"
    config: DBOSConfig = {"name": "bench", "system_database_url": url, "log_level": "WARNING"}
    if journal == "wal":
        engine = sa.create_engine(url)

        @sa.event.listens_for(engine, "connect")
        def tune(dbapi_conn: object, _record: object) -> None:
            dbapi_conn.isolation_level = "IMMEDIATE"  # type: ignore[attr-defined]
            dbapi_conn.execute("PRAGMA busy_timeout=30000")  # type: ignore[attr-defined]
            dbapi_conn.execute("PRAGMA journal_mode=WAL")  # type: ignore[attr-defined]
            dbapi_conn.execute(f"PRAGMA synchronous={sync}")  # type: ignore[attr-defined]

        config["system_database_engine"] = engine
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
    rate = pg.drive(lambda: five(1), seconds, threads)
    DBOS.destroy()
    return {"workflows_per_s": rate}


RECOVERY_APP = """
import os, time
from sagaway import App
app = App(os.environ["SAGAWAY_DB"], concurrency=int(os.environ["BENCH_CONCURRENCY"]))
gate = os.environ["BENCH_GATE"]

@app.step
def noop(x):
    return x

@app.step
def gated(x):
    with open(gate + ".entered", "a") as f:
        f.write("x")
    while os.path.exists(gate):
        time.sleep(0.05)
    return x

@app.saga()
def five(ctx, x):
    noop(x); noop(x); gated(x); noop(x); noop(x)
    return x
"""


def child_recovery(runs: int) -> dict:
    """Runs in flight (inside step 3) when their worker process is SIGKILLed: how long a new
    worker process takes to finish them all."""
    sys.path.insert(0, str(ROOT))
    from sagaway import App

    work = Path(tempfile.mkdtemp())
    (work / "recovery_app.py").write_text(RECOVERY_APP)
    gate = work / "gate"
    gate.touch()
    url = f"sqlite:///{work / 'sagaway.db'}"
    env = {
        **os.environ,
        "SAGAWAY_DB": url,
        "BENCH_GATE": str(gate),
        "PYTHONPATH": f"{work}:{ROOT}",
    }
    command = [sys.executable, "-m", "sagaway.cli", "worker", "recovery_app:app", "--quiet"]
    first = subprocess.Popen(command, env={**env, "BENCH_CONCURRENCY": str(runs)}, cwd=work)
    client = App(url)

    @client.saga()
    def five(ctx: object, x: int) -> int:
        return x

    for i in range(runs):
        client.start(five, i)
    entered = gate.with_name("gate.entered")
    deadline = time.time() + 120
    while time.time() < deadline:
        if entered.exists() and entered.stat().st_size >= runs:
            break
        time.sleep(0.05)
    first.kill()
    first.wait()
    gate.unlink()
    in_flight = client.store.count_runs().get("running", 0)
    start = time.perf_counter()
    second = subprocess.Popen(command, env={**env, "BENCH_CONCURRENCY": "32"}, cwd=work)
    while client.store.count_runs().get("succeeded", 0) < runs:
        time.sleep(0.02)
        if time.perf_counter() - start > 120:
            break
    elapsed = time.perf_counter() - start
    second.terminate()
    second.wait()
    return {
        "in_flight": in_flight,
        "finished": client.store.count_runs().get("succeeded", 0),
        "seconds": elapsed,
    }


# --- orchestration ---------------------------------------------------------------------------
def run_child(*args: str) -> dict:
    return _child.run_child(__file__, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument("--only", default="floor,sagaway,dbos,overhead,recovery,postgres")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = {
            "floor": lambda: child_floor(rest[0], float(rest[1])),
            "sagaway": lambda: child_sagaway(rest[0], float(rest[1]), int(rest[2])),
            "dbos": lambda: child_dbos(rest[0], rest[1], float(rest[2]), int(rest[3])),
            "overhead": lambda: child_overhead(float(rest[0]), rest[1] == "traced"),
            "recovery": lambda: child_recovery(int(rest[0])),
            "pg_floor": lambda: pg.child_floor(float(rest[0]), int(rest[1])),
            "pg_sagaway": lambda: pg.child_sagaway(float(rest[0]), int(rest[1])),
            "pg_dbos": lambda: pg.child_dbos(float(rest[0]), int(rest[1])),
            "pg_processes": lambda: pg.child_processes(int(rest[0]), int(rest[1])),
            "pg_latency": lambda: pg.child_latency(int(rest[0])),
        }[kind]()
        print(json.dumps(result))
        return

    only = set(args.only.split(","))
    s = str(args.seconds)
    rows: list[tuple[str, str, float | None, float | None]] = []
    floors: dict[str, float] = {}
    print(
        f"five-step no-op sagas, {args.seconds:.0f} s per cell, {THREADS} client threads "
        f"for 'concurrent'; Python {sys.version.split()[0]}, {os.cpu_count()} cores"
    )
    for sync in ("FULL", "NORMAL"):
        if "floor" in only:
            floors[sync] = run_child("floor", sync, s)["commits_per_s"]
        if "sagaway" in only:
            seq = run_child("sagaway", sync, s, "1")["workflows_per_s"]
            conc = run_child("sagaway", sync, s, str(THREADS))
            rows.append(("sagaway", f"WAL, synchronous={sync}", seq, conc["workflows_per_s"]))
            print(
                f"  sagaway {sync}: {conc['writes_per_commit']:.1f} writes per commit "
                "when concurrent (group commit)"
            )
        if "dbos" in only:
            seq = run_child("dbos", "wal", sync, s, "1")["workflows_per_s"]
            conc = run_child("dbos", "wal", sync, s, str(THREADS))["workflows_per_s"]
            rows.append(("DBOS", f"WAL, synchronous={sync}", seq, conc))
    if "dbos" in only:
        seq = run_child("dbos", "default", "FULL", s, "1")["workflows_per_s"]
        conc = run_child("dbos", "default", "FULL", s, str(THREADS))["workflows_per_s"]
        rows.append(("DBOS", "out of the box (rollback journal, FULL)", seq, conc))

    if rows or floors:
        print()
        print("| system | store settings | sequential (sagas/s) | concurrent (sagas/s) |")
        print("|---|---|---:|---:|")
    for system, config, seq, conc in rows:
        print(f"| {system} | {config} | {seq:,.0f} | {conc:,.0f} |")
    for sync, rate in floors.items():
        print(f"| floor: raw SQLite commits | WAL, synchronous={sync} | {rate:,.0f} commits/s | |")

    by = {(system, config): (seq, conc) for system, config, seq, conc in rows}
    if "sagaway" in only and "dbos" in only:
        print()
        print("| ratio, same settings | sequential | concurrent |")
        print("|---|---:|---:|")
        default = by[("DBOS", "out of the box (rollback journal, FULL)")]
        for sync in ("FULL", "NORMAL"):
            ours = by[("sagaway", f"WAL, synchronous={sync}")]
            theirs = by[("DBOS", f"WAL, synchronous={sync}")]
            print(
                f"| sagaway / DBOS, both WAL {sync} | {ours[0] / theirs[0]:.1f}x | "
                f"{ours[1] / theirs[1]:.1f}x |"
            )
        ours = by[("sagaway", "WAL, synchronous=FULL")]
        print(
            f"| sagaway FULL / DBOS out of the box (both fsync every commit) | "
            f"{ours[0] / default[0]:.1f}x | {ours[1] / default[1]:.1f}x |"
        )
    if "sagaway" in only and "floor" in only:
        print()
        print("| sagaway's commits, sequential | per saga | commits/s used | floor commits/s |")
        print("|---|---:|---:|---:|")
        for sync in ("FULL", "NORMAL"):
            seq = by[("sagaway", f"WAL, synchronous={sync}")][0]
            # start, steps 1-4 before steps 2-5 run, step 5 together with the end: 6 commits
            print(f"| {sync} | 6 | {seq * 6:,.0f} | {floors[sync]:,.0f} |")
    if "overhead" in only:
        print()
        print("| per-step engine overhead, NORMAL (a commit included) | p50 | p99 | steps |")
        print("|---|---:|---:|---:|")
        for tracing in ("off", "traced"):
            if tracing == "traced" and importlib.util.find_spec("opentelemetry.sdk") is None:
                print("| tracing on: not measured, the `otel` extra is not installed | | | |")
                continue
            o = run_child("overhead", s, tracing)
            label = "tracing off" if tracing == "off" else "tracing on (OpenTelemetry SDK)"
            print(
                f"| {label} | {o['step_p50_us']:.0f} µs | {o['step_p99_us']:.0f} µs | "
                f"{o['steps']:,} |"
            )
    if "recovery" in only:
        r = run_child("recovery", "1000")
        print(
            f"recovery: {r['in_flight']} runs in flight in a SIGKILLed worker process; a new "
            f"worker process finished {r['finished']} of them in {r['seconds']:.2f} s"
        )
    if "postgres" in only:
        pg.report(run_child, args.seconds, THREADS)


if __name__ == "__main__":
    main()
