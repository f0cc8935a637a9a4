"""Fan-out benchmark: a map inside one saga beside the same items as independent runs, child
sagas spread over worker processes, and the memory of a large map.

- map vs runs (SQLite, synchronous=FULL): 10,000 no-op items as `ctx.map(step, items,
  concurrency=32)` in one saga, beside 10,000 one-step sagas started by 16 client threads
  with the same in-process worker (32 threads). Reported: wall time, items per second,
  checkpoints (`Store.checkpoint` calls) and commits (group-commit transactions) per item.
- children (PostgreSQL): one saga maps a one-step no-op saga over 10,000 items; the child
  runs are executed by 1, 2 and 4 `sagaway worker` processes (32 threads each); children per
  second from the start of the parent to its end, how many times the parent was claimed
  (each claim counts its children and starts more or rests again), and the CPU the
  workers, the client and every PostgreSQL process spent (Linux /proc). Server:
  $SAGAWAY_BENCH_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test.
- memory: a 100,000-item map of no-op steps (SQLite, synchronous=NORMAL: durability does
  not change what is held in memory), the peak resident memory of the process executing it.

Every measurement runs in a fresh child process.

    python bench/fanout.py                            # everything, a few minutes
    python bench/fanout.py --only map                 # map vs runs only
    python bench/fanout.py --only children --workers 1,2,4 --items 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _child  # noqa: E402 - next to this file

WORKER_APP = """
import os
from sagaway import App
app = App(os.environ["SAGAWAY_DB"], concurrency=32)

@app.step
def noop(x):
    return x

@app.saga()
def child(ctx, x):
    return noop(x)

@app.saga()
def parent(ctx, items):
    return len(ctx.map(child, list(range(items))))
"""


def _counting(store: object) -> list[int]:
    """Count `store.checkpoint` calls (the engine's writes) from now on."""
    calls = [0]
    original = store.checkpoint  # type: ignore[attr-defined]

    def checkpoint(cp: object) -> bool:
        calls[0] += 1
        return original(cp)

    store.checkpoint = checkpoint  # type: ignore[attr-defined]
    return calls


def _sqlite_app(sync: str) -> object:
    from sagaway import App

    path = Path(tempfile.mkdtemp()) / "fanout.db"
    return App(f"sqlite:///{path}?synchronous={sync}", concurrency=32, record_metrics=False)


# --- children: each prints one JSON line ----------------------------------------------------
def _map_app(sync: str) -> tuple[object, object]:
    """An App whose saga `batch(n)` maps a no-op step over n items, 32 at once."""
    app = _sqlite_app(sync)

    @app.step
    def noop(x: int) -> int:
        return x

    @app.saga()
    def batch(ctx: object, n: int) -> int:
        return len(ctx.map(noop, list(range(n)), concurrency=32))  # type: ignore[attr-defined]

    return app, batch


def child_map(items: int, sync: str) -> dict:
    app, batch = _map_app(sync)
    store = app.store  # type: ignore[attr-defined]
    with app:  # type: ignore[attr-defined]
        calls = _counting(store)
        commits_before = store.commit_stats[0]
        start = time.perf_counter()
        assert app.start(batch, items).result(timeout=600) == items  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - start
        commits = store.commit_stats[0] - commits_before
    app.close()  # type: ignore[attr-defined]
    return {"seconds": elapsed, "checkpoints": calls[0], "commits": commits}


def child_runs(items: int, sync: str) -> dict:
    app = _sqlite_app(sync)

    @app.step
    def noop(x: int) -> int:
        return x

    @app.saga()
    def one(ctx: object, x: int) -> int:
        return noop(x)

    store = app.store  # type: ignore[attr-defined]
    with app:  # type: ignore[attr-defined]
        calls = _counting(store)
        commits_before = store.commit_stats[0]
        start = time.perf_counter()
        per_thread = items // 16

        def client(k: int) -> None:
            for i in range(per_thread):
                app.start(one, k * per_thread + i)  # type: ignore[attr-defined]

        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = per_thread * 16
        while store.count_runs().get("succeeded", 0) < total:
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        commits = store.commit_stats[0] - commits_before
    app.close()  # type: ignore[attr-defined]
    return {"seconds": elapsed, "checkpoints": calls[0], "commits": commits, "items": total}


def child_children(workers: int, items: int) -> dict:
    import _pg_engine as pg

    from sagaway import App

    work = Path(tempfile.mkdtemp())
    (work / "bench_app.py").write_text(WORKER_APP)
    with pg._Schema() as schema:
        client = App(schema.url, record_metrics=False)

        @client.saga()
        def parent(ctx: object, items: int) -> int: ...

        client.store  # noqa: B018 - create the schema before the workers race to
        procs = pg._start_workers(schema.url, workers, work)
        try:
            time.sleep(0.5)  # let the workers settle (pool connections, first polls)
            cpu_before = pg._cpu(procs)
            start = time.perf_counter()
            run = client.start(parent, items)
            assert run.result(timeout=900) == items
            elapsed = time.perf_counter() - start
            cpu = {k: v - cpu_before[k] for k, v in pg._cpu(procs).items()}
            claims = run.refresh().epoch
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
            client.close()
    return {
        "seconds": elapsed,
        "children_per_s": items / elapsed,
        "parent_claims": claims,
        "cpu_ms_per_child": {k: v / items * 1000 for k, v in cpu.items()},
        "cpu_busy": sum(cpu.values()) / (elapsed * (os.cpu_count() or 1)),
    }


def child_memory(items: int) -> dict:
    app, batch = _map_app("NORMAL")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with app:  # type: ignore[attr-defined]
        start = time.perf_counter()
        assert app.start(batch, items).result(timeout=1200) == items  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    app.close()  # type: ignore[attr-defined]
    return {"seconds": elapsed, "rss_before_mb": before, "rss_peak_mb": peak}


# --- orchestration ---------------------------------------------------------------------------
def run_child(*args: str) -> dict:
    return _child.run_child(__file__, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="map,children,memory")
    parser.add_argument("--items", type=int, default=10_000, help="map and children items")
    parser.add_argument("--workers", default="1,2,4", help="worker processes for children")
    parser.add_argument("--memory-items", type=int, default=100_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = {
            "map": lambda: child_map(int(rest[0]), rest[1]),
            "runs": lambda: child_runs(int(rest[0]), rest[1]),
            "children": lambda: child_children(int(rest[0]), int(rest[1])),
            "memory": lambda: child_memory(int(rest[0])),
        }[kind]()
        print(json.dumps(result))
        return

    only = set(args.only.split(","))
    load = os.getloadavg()
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"
    )
    n = args.items
    if "map" in only:
        print()
        print(f"{n:,} no-op items on SQLite (WAL, synchronous=FULL), 32 worker threads")
        print()
        print("| how | seconds | items/s | checkpoints/item | commits/item |")
        print("|---|---:|---:|---:|---:|")
        for label, kind in (("ctx.map(step, concurrency=32), one saga", "map"),
                            ("independent one-step runs, 16 client threads", "runs")):  # fmt: skip
            r = run_child(kind, str(n), "FULL")
            items = r.get("items", n)
            print(
                f"| {label} | {r['seconds']:.2f} | {items / r['seconds']:,.0f} | "
                f"{r['checkpoints'] / items:.4f} | {r['commits'] / items:.4f} |"
            )
    if "children" in only:
        import _pg_engine as pg

        problem = pg.server_problem()
        print()
        if problem is not None:
            print(f"children: skipped, no PostgreSQL server at {pg.SERVER} ({problem})")
        else:
            print(f"{n:,} child sagas (one no-op step each) of one map, {pg.server_info()}")
            print()
            print(
                "| worker processes | seconds | children/s | parent claims | CPU busy | "
                "CPU ms per child: workers / client / PostgreSQL |"
            )
            print("|---:|---:|---:|---:|---:|---|")
            for workers in args.workers.split(","):
                r = run_child("children", workers, str(n))
                ms = r["cpu_ms_per_child"]
                print(
                    f"| {workers} | {r['seconds']:.2f} | {r['children_per_s']:,.0f} | "
                    f"{r['parent_claims']} | {r['cpu_busy']:.0%} | {ms['workers']:.2f} / "
                    f"{ms['client']:.2f} / {ms['postgres']:.2f} |"
                )
    if "memory" in only:
        r = run_child("memory", str(args.memory_items))
        print()
        print(
            f"memory: a {args.memory_items:,}-item map of no-op steps took {r['seconds']:.1f} s; "
            f"peak resident memory {r['rss_peak_mb']:.0f} MB "
            f"({r['rss_before_mb']:.0f} MB before the App started)"
        )
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end")


if __name__ == "__main__":
    main()
