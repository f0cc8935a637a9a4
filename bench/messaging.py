"""Durable messaging: sagaway vs PgQueuer vs procrastinate on PostgreSQL, SQLite against the
raw fsync'd commit rate, and the cost of the outbox on a step, side by side in one run.

- PostgreSQL, publish -> handled, end to end: 1 KB payloads, a producer process (as an
  application's web processes would be) with 4 threads or tasks publishing one message per
  transaction with the system's own client, as fast as they can, while a consumer process
  handles them with 4 consumers (a handler that only records its arrival). Jobs/s =
  messages / (first publish .. last handled); each system's peak is the median of
  `--rounds` runs, the three systems taking turns. Each system in a database (PgQueuer:
  msgbench_pgqueuer, procrastinate: msgbench_procrastinate) or schema (sagaway) of its own
  on the same server, with the server's durability (synchronous_commit on, logged tables:
  PgQueuer's default `durable`). Then each system again at half its own peak rate, paced:
  p50/p99 latency from publish to the handler's call.
- SQLite, synchronous=FULL (WAL): sagaway's end-to-end messages/s (16 producers, a group
  with concurrency 16) vs the floor: single-row INSERT transactions, WAL, synchronous=FULL,
  measured alternately (the disk is shared) and compared by their medians.
- Outbox overhead: a one-step saga whose step publishes one message (a small event, and
  1 KB) vs the same saga without, the two run by run in turn (start, wait for the result),
  on SQLite FULL and PostgreSQL: medians of the runs' times.

Every measurement runs in a fresh child process. Server: $SAGAWAY_BENCH_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test).

    python bench/messaging.py                  # everything, ~6 minutes
    python bench/messaging.py --messages 2000 --rounds 1  # shorter
    python bench/messaging.py --only sqlite,overhead
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from typing import Any

import _child  # one measurement in a fresh process, next to this file

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("SAGAWAY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CONSUMERS = 4
PRODUCERS = 4
SQLITE_PRODUCERS = 16
SQLITE_CONSUMERS = 16
PAD = "x" * 1000  # with the send time, a payload of about 1 KB


def _payload() -> dict:
    return {"sent": time.time(), "pad": PAD}


class Tally:
    """Arrivals of a run: how many, and each one's publish-to-handler latency."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.first = float("inf")
        self.last = 0.0

    def arrived(self, sent: float) -> None:
        now = time.time()
        with self.lock:
            self.latencies.append(now - sent)
            self.first = min(self.first, sent)
            self.last = now
            if len(self.latencies) >= self.expected:
                self.done.set()

    def result(self, n: int) -> dict:
        """From the first send to the last arrival."""
        lat = sorted(self.latencies)
        return {
            "messages": n,
            "seconds": self.last - self.first,
            "per_s": n / (self.last - self.first),
            "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        }


def _schedule(n: int, rate: float | None, producers: int, index: int) -> list[float | None]:
    """When producer `index` sends each of its messages (None: at once, back to back)."""
    mine = range(index, n, producers)
    return [None if rate is None else i / rate for i in mine]


def _pace(start: float, at: float | None) -> None:
    if at is not None and (delay := start + at - time.time()) > 0:
        time.sleep(delay)


async def _apace(start: float, at: float | None) -> None:
    if at is not None and (delay := start + at - time.time()) > 0:
        await asyncio.sleep(delay)


# --- PostgreSQL administration ------------------------------------------------------------
def _conninfo(database: str | None = None) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(SERVER)
    if database:
        params["dbname"] = database
    return make_conninfo(**params)


def _dsn(database: str) -> str:
    """The server's URL with another database (asyncpg takes URLs, not conninfo strings)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(SERVER)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _recreate_database(name: str, drop_only: bool = False) -> str:
    import psycopg

    with psycopg.connect(_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if not drop_only:
            conn.execute(f"CREATE DATABASE {name}")
    return _conninfo(name)


def _drop_schema(name: str) -> None:
    import psycopg

    with psycopg.connect(_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


# --- children: sagaway ---------------------------------------------------------------------
def _sagaway_run(
    url: str, n: int, produce: Callable[[Any], None], consumers: int = CONSUMERS
) -> dict:
    from sagaway import App

    tally = Tally(n)
    app = App(url, record_metrics=False)

    @app.consumer("bench", group="bench", concurrency=consumers)
    def handle(message) -> None:
        tally.arrived(message.payload["sent"])

    app.store  # noqa: B018 - create the tables before timing
    with app:
        time.sleep(0.5)  # the group registered, its worker waiting
        produce(app)
        if not tally.done.wait(300):
            raise SystemExit(f"sagaway: {len(tally.latencies)} of {n} handled")
    app.close()
    return tally.result(n)


def _publish_threads(app: Any, n: int, rate: float | None, producers: int) -> None:
    """`producers` threads publishing `n` messages through `app`, paced to `rate`."""
    started = time.time()

    def produce(index: int) -> None:
        for at in _schedule(n, rate, producers, index):
            _pace(started, at)
            app.publish("bench", _payload())

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _producer(system: str, target: str, n: int, rate: float | None) -> subprocess.Popen:
    """The producers of a PostgreSQL run, in a process of their own, as an application's web
    processes would be: started now, publishing at once."""
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            "produce",
            system,
            target,
            str(n),
            str(rate or "peak"),
        ],
        cwd=ROOT,
    )


def _finish_producer(process: subprocess.Popen) -> None:
    if process.wait(300) != 0:
        raise SystemExit(f"the producer process failed (exit {process.returncode})")


def child_produce(system: str, target: str, n: int, rate: float | None) -> dict:
    """Publish `n` messages with `system`'s own client from PRODUCERS threads or tasks."""
    if system == "sagaway":
        from sagaway import App

        app = App(target, record_metrics=False)
        _publish_threads(app, n, rate, PRODUCERS)
        app.close()
    elif system == "pgqueuer":
        asyncio.run(_pgqueuer_produce(target, n, rate))
    else:
        asyncio.run(_procrastinate_produce(target, n, rate))
    return {"published": n}


def child_sagaway_pg(n: int, rate: float | None) -> dict:
    schema = f"msgbench_{uuid.uuid4().hex[:8]}"
    url = f"{SERVER}{'&' if '?' in SERVER else '?'}schema={schema}"

    def produce(app: Any) -> None:
        _finish_producer(_producer("sagaway", url, n, rate))

    try:
        return _sagaway_run(url, n, produce)
    finally:
        _drop_schema(schema)


def child_sagaway_sqlite(n: int, producers: int, consumers: int) -> dict:
    path = Path(tempfile.mkdtemp()) / "bench.db"
    return _sagaway_run(
        f"sqlite:///{path}?synchronous=FULL",
        n,
        lambda app: _publish_threads(app, n, None, producers),
        consumers,
    )


def child_floor(seconds: float) -> dict:
    import sqlite3

    path = Path(tempfile.mkdtemp()) / "floor.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.execute("INSERT INTO t (v) VALUES (?)", (PAD,))
        n += 1
    return {"commits_per_s": n / (time.perf_counter() - start)}


def child_overhead(backend: str, runs: int, size: str) -> dict:
    """Per run: a one-step saga with and without a publish in the step, medians."""
    from sagaway import App, current_step

    schema = f"msgbench_{uuid.uuid4().hex[:8]}"
    if backend == "postgres":
        url = f"{SERVER}{'&' if '?' in SERVER else '?'}schema={schema}"
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'overhead.db'}?synchronous=FULL"
    app = App(url, record_metrics=False)

    @app.step
    def plain(order: int) -> int:
        return order

    @app.step
    def publishing(order: int) -> int:
        payload = {"order": order, "pad": PAD} if size == "1kb" else {"order": order}
        current_step().publish("orders.placed", payload, key=str(order))
        return order

    @app.saga()
    def without(ctx, order: int) -> int:
        return plain(order)

    @app.saga()
    def with_publish(ctx, order: int) -> int:
        return publishing(order)

    times: dict[str, list[float]] = {"without": [], "with": []}
    try:
        with app:
            for saga in (without, with_publish):  # warm up
                for i in range(50):
                    app.start(saga, i).result(timeout=30)
            # Run by run in turn, so that both sides meet the same disk: on a shared machine
            # an fsync's time varies by 2x from one minute to the next.
            for i in range(runs):
                for name, saga in (("without", without), ("with", with_publish)):
                    started = time.perf_counter()
                    app.start(saga, i).result(timeout=30)
                    times[name].append(time.perf_counter() - started)
        app.close()
    finally:
        if backend == "postgres":
            _drop_schema(schema)
    base, loaded = statistics.median(times["without"]), statistics.median(times["with"])
    return {"without_ms": 1000 * base, "with_ms": 1000 * loaded, "overhead": loaded / base - 1}


async def _until_done(tally: Tally, worker: asyncio.Task, name: str) -> None:
    deadline = time.monotonic() + 300
    while not tally.done.is_set():
        if worker.done():
            worker.result()  # raises what stopped the worker
            raise SystemExit(f"{name}: its worker stopped")
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: {len(tally.latencies)} of {tally.expected} handled")
        await asyncio.sleep(0.001)


# --- children: PgQueuer --------------------------------------------------------------------
def child_pgqueuer(n: int, rate: float | None) -> dict:
    return asyncio.run(_pgqueuer(n, rate))


async def _pgqueuer(n: int, rate: float | None) -> dict:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager

    _recreate_database("msgbench_pgqueuer")
    dsn = _dsn("msgbench_pgqueuer")
    tally = Tally(n)
    try:
        worker_conn = await asyncpg.connect(dsn)
        await Queries(AsyncpgDriver(worker_conn)).install()
        manager = QueueManager(Queries(AsyncpgDriver(worker_conn)))

        @manager.entrypoint("bench", concurrency_limit=CONSUMERS)
        async def handle(job) -> None:
            tally.arrived(json.loads(job.payload)["sent"])

        worker = asyncio.create_task(manager.run(batch_size=CONSUMERS))
        await asyncio.sleep(0.5)
        producer = _producer("pgqueuer", dsn, n, rate)
        await _until_done(tally, worker, "PgQueuer")
        _finish_producer(producer)
        manager.shutdown.set()
        await asyncio.wait_for(worker, 30)
        await worker_conn.close()
    finally:
        _recreate_database("msgbench_pgqueuer", drop_only=True)
    return tally.result(n)


async def _pgqueuer_produce(dsn: str, n: int, rate: float | None) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    started = time.time()

    async def produce(index: int) -> None:
        conn = await asyncpg.connect(dsn)
        queries = Queries(AsyncpgDriver(conn))
        for at in _schedule(n, rate, PRODUCERS, index):
            await _apace(started, at)
            await queries.enqueue("bench", json.dumps(_payload()).encode())
        await conn.close()

    await asyncio.gather(*(produce(i) for i in range(PRODUCERS)))


# --- children: procrastinate ---------------------------------------------------------------
def child_procrastinate(n: int, rate: float | None) -> dict:
    return asyncio.run(_procrastinate(n, rate))


def _procrastinate_app(conninfo: str, tally: Tally | None) -> Any:
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=conninfo, min_size=PRODUCERS + 2, max_size=PRODUCERS + 4
        )
    )

    @app.task(name="bench")
    async def handle(sent: float, pad: str) -> None:
        if tally is not None:
            tally.arrived(sent)

    return app


async def _procrastinate(n: int, rate: float | None) -> dict:
    conninfo = _recreate_database("msgbench_procrastinate")
    tally = Tally(n)
    try:
        app = _procrastinate_app(conninfo, tally)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            worker = asyncio.create_task(
                app.run_worker_async(
                    concurrency=CONSUMERS, install_signal_handlers=False, wait=True
                )
            )
            await asyncio.sleep(0.5)
            producer = _producer("procrastinate", conninfo, n, rate)
            await _until_done(tally, worker, "procrastinate")
            _finish_producer(producer)
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
    finally:
        _recreate_database("msgbench_procrastinate", drop_only=True)
    return tally.result(n)


async def _procrastinate_produce(conninfo: str, n: int, rate: float | None) -> None:
    app = _procrastinate_app(conninfo, None)
    task = app.tasks["bench"]
    started = time.time()
    async with app.open_async():

        async def produce(index: int) -> None:
            for at in _schedule(n, rate, PRODUCERS, index):
                await _apace(started, at)
                await task.defer_async(**_payload())

        await asyncio.gather(*(produce(i) for i in range(PRODUCERS)))


# --- the parent ----------------------------------------------------------------------------
def run_child(*args: str) -> dict:
    return _child.run_child(__file__, *args)


CHILDREN: dict[str, Callable[[list[str]], dict]] = {
    "sagaway": lambda a: child_sagaway_pg(int(a[0]), _rate(a[1])),
    "pgqueuer": lambda a: child_pgqueuer(int(a[0]), _rate(a[1])),
    "procrastinate": lambda a: child_procrastinate(int(a[0]), _rate(a[1])),
    "sqlite": lambda a: child_sagaway_sqlite(int(a[0]), int(a[1]), int(a[2])),
    "floor": lambda a: child_floor(float(a[0])),
    "overhead": lambda a: child_overhead(a[0], int(a[1]), a[2]),
    "produce": lambda a: child_produce(a[0], a[1], int(a[2]), _rate(a[3])),
}


def _rate(text: str) -> float | None:
    return None if text == "peak" else float(text)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000, help="per throughput run")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=500, help="per side, outbox overhead")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per system")
    parser.add_argument("--only", default="postgres,sqlite,overhead")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(CHILDREN[kind](rest)))
        return
    only = set(args.only.split(","))
    load = os.getloadavg()
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"
    )
    verdicts: list[str] = []
    if "postgres" in only:
        n = str(args.messages)
        systems = ("sagaway", "pgqueuer", "procrastinate")
        # The server and cores are shared: each round runs the three in turn (starting with a
        # different one), and each system's peak is its median over the rounds.
        runs: dict[str, list[float]] = {name: [] for name in systems}
        for r in range(args.rounds):
            for name in systems[r % 3 :] + systems[: r % 3]:
                runs[name].append(run_child(name, n, "peak")["per_s"])
        peak = {name: {"per_s": statistics.median(rates)} for name, rates in runs.items()}
        half = {}
        for name, result in peak.items():
            rate = result["per_s"] / 2
            count = max(200, int(rate * args.latency_seconds))
            half[name] = run_child(name, str(count), f"{rate:.1f}")
        print(
            f"\nPostgreSQL, publish -> handled, 1 KB payloads, {PRODUCERS} producers, "
            f"{CONSUMERS} consumers, {args.messages} messages"
        )
        print("| system | peak (jobs/s), median | rounds | at half the peak: p50 | p99 |")
        print("|---|---:|---|---:|---:|")
        for name in peak:
            print(
                f"| {name} | {peak[name]['per_s']:,.0f} "
                f"| {', '.join(f'{r:,.0f}' for r in runs[name])} "
                f"| {half[name]['p50_ms']:.1f} ms | {half[name]['p99_ms']:.1f} ms |"
            )
        s, q, p = (peak[k]["per_s"] for k in ("sagaway", "pgqueuer", "procrastinate"))
        verdicts += [
            f">= PgQueuer: {s / q:.2f}x, {_verdict(s >= q)}",
            f">= 3x procrastinate: {s / p:.2f}x, {_verdict(s >= 3 * p)}",
            f"p99 < 50 ms at half the peak: {half['sagaway']['p99_ms']:.1f} ms, "
            f"{_verdict(half['sagaway']['p99_ms'] < 50)}",
        ]
    if "sqlite" in only:
        # The disk is shared: the floor moves by 2x from minute to minute. Alternate the two
        # measurements and compare medians.
        floors, rates = [], []
        for _ in range(args.rounds):
            floors.append(run_child("floor", "2")["commits_per_s"])
            rates.append(
                run_child(
                    "sqlite", str(args.messages), str(SQLITE_PRODUCERS), str(SQLITE_CONSUMERS)
                )["per_s"]
            )
        floor, rate = statistics.median(floors), statistics.median(rates)
        print(f"\nSQLite, WAL, synchronous=FULL (median of {args.rounds} alternating runs)")
        print("| what | per second | runs |")
        print("|---|---:|---|")
        print(
            f"| floor: single-row INSERT transactions | {floor:,.0f} commits "
            f"| {', '.join(f'{f:,.0f}' for f in floors)} |"
        )
        print(
            f"| sagaway, publish -> handled ({SQLITE_PRODUCERS} producers, "
            f"{SQLITE_CONSUMERS} consumers) | {rate:,.0f} messages "
            f"| {', '.join(f'{r:,.0f}' for r in rates)} |"
        )
        ratio = rate / floor
        verdicts.append(f">= 2x the SQLite floor: {ratio:.2f}x, {_verdict(ratio >= 2)}")
    if "overhead" in only:
        print("\nOutbox overhead: a one-step saga, run after run (start, wait for the result)")
        print("| store | message | step without publish | with one publish | overhead |")
        print("|---|---|---:|---:|---:|")
        for backend in ("sqlite", "postgres"):
            for size, label in (("small", '`{"order": n}`'), ("1kb", "1 KB")):
                o = run_child("overhead", backend, str(args.runs), size)
                print(
                    f"| {backend} | {label} | {o['without_ms']:.2f} ms | {o['with_ms']:.2f} ms "
                    f"| {100 * o['overhead']:+.1f} % |"
                )
                verdicts.append(
                    f"outbox overhead <= 10 % ({backend}, {size}): {100 * o['overhead']:+.1f} %, "
                    f"{_verdict(o['overhead'] <= 0.10)}"
                )
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end")
    print("targets:")
    for line in verdicts:
        print(f"  {line}")


if __name__ == "__main__":
    main()
