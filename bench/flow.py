"""Flow control: what a concurrency limit costs the claim path, and whether a hot key holds
up the others, side by side.

Backlog (SQLite, synchronous=NORMAL, one-step no-op sagas, a worker of 16 threads started
after every run was created, so that each run goes through a claim):

- no limit: the saga declared without `concurrency=` (the path every other saga takes);
- limit never reached: `concurrency=1000` on one key (each claim takes a key's lock and
  counts its slots, and every end gives a slot back);
- limit 4 x 50 keys: `concurrency=4` per key over 50 keys (runs queue and are woken).

Claims: `store.claim` alone, 32 due runs at a time, with and without a limit.

Hot key: 10,000 runs of one key under `concurrency=4`, then 100 runs over 10 other keys
started after them; how long until the 100 finished, against how long the hot key's
backlog takes.

    python bench/flow.py                  # everything, about a minute
    python bench/flow.py --runs 1000      # a smaller backlog
    python bench/flow.py --only backlog   # the claim path alone
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _child  # one measurement in a fresh process

ROOT = Path(__file__).resolve().parent.parent


def _app(threads: int = 16) -> object:
    sys.path.insert(0, str(ROOT))
    from sagaway import App

    path = Path(tempfile.mkdtemp()) / "flow.db"
    return App(f"sqlite:///{path}?synchronous=NORMAL", concurrency=threads)


def _start_all(app: object, saga: object, inputs: list[tuple]) -> list:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda args: app.start(saga, *args), inputs))  # type: ignore[attr-defined]


def child_backlog(case: str, runs: int) -> dict:
    app = _app()
    options = {
        "plain": {},
        "unreached": {"concurrency": 1000},
        "keys": {"concurrency": 4, "concurrency_key": lambda shop, n: shop},
    }[case]

    @app.step  # type: ignore[attr-defined]
    def noop(n: int) -> int:
        return n

    @app.saga(**options)  # type: ignore[attr-defined]
    def one(ctx: object, shop: str, n: int) -> int:
        return noop(n)

    handles = _start_all(app, one, [(f"shop-{i % 50}", i) for i in range(runs)])
    started = time.perf_counter()
    with app:  # type: ignore[attr-defined]
        for run in handles:
            run.result(timeout=600)
        elapsed = time.perf_counter() - started
    app.close()  # type: ignore[attr-defined]
    return {"runs_per_s": runs / elapsed}


def child_claims(case: str, runs: int) -> dict:
    """`store.claim` alone: `runs` due runs taken 32 at a time by one owner."""
    app = _app()
    options = {"plain": {}, "unreached": {"concurrency": 100_000}}[case]

    @app.saga(**options)  # type: ignore[attr-defined]
    def one(ctx: object, shop: str, n: int) -> int:
        return n

    _start_all(app, one, [("shop", i) for i in range(runs)])
    store = app.store  # type: ignore[attr-defined]
    took, claimed = [], 0
    while claimed < runs:
        now = store.now()
        began = time.perf_counter()
        claimed += len(store.claim("bench:1:1:x", 32, now, now + 600))
        took.append(time.perf_counter() - began)
    app.close()  # type: ignore[attr-defined]
    took.sort()
    return {"claim_p50_us": took[len(took) // 2] * 1e6, "claims": len(took)}


def child_hot(hot: int, cold: int) -> dict:
    app = _app()

    @app.step  # type: ignore[attr-defined]
    def work(n: int) -> int:
        time.sleep(0.001)
        return n

    @app.saga(concurrency=4, concurrency_key=lambda shop, n: shop)  # type: ignore[attr-defined]
    def one(ctx: object, shop: str, n: int) -> int:
        return work(n)

    hot_runs = _start_all(app, one, [("hot", i) for i in range(hot)])
    cold_runs = _start_all(app, one, [(f"cold-{i % 10}", i) for i in range(cold)])
    started = time.perf_counter()
    with app:  # type: ignore[attr-defined]
        for run in cold_runs:
            run.result(timeout=600)
        cold_done = time.perf_counter() - started
        hot_left = sum(run.status != "succeeded" for run in hot_runs)
        for run in hot_runs:
            run.result(timeout=600)
        hot_done = time.perf_counter() - started
    app.close()  # type: ignore[attr-defined]
    return {"cold_s": cold_done, "hot_s": hot_done, "hot_left": hot_left}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000, help="runs in each backlog")
    parser.add_argument("--hot", type=int, default=10_000, help="runs of the hot key")
    parser.add_argument("--only", default="backlog,claims,hot")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import json

        kind, *rest = args.child
        if kind == "backlog":
            print(json.dumps(child_backlog(rest[0], int(rest[1]))))
        elif kind == "claims":
            print(json.dumps(child_claims(rest[0], int(rest[1]))))
        else:
            print(json.dumps(child_hot(int(rest[0]), int(rest[1]))))
        return
    only = set(args.only.split(","))
    script = str(Path(__file__).resolve())
    print(f"Python {sys.version.split()[0]}; SQLite, synchronous=NORMAL, 16 worker threads\n")
    if "backlog" in only:
        print(f"| {args.runs:,} one-step runs, claimed by a worker | runs/s |")
        print("|---|---:|")
        labels = {
            "plain": "no limit",
            "unreached": "limit never reached (1000, one key)",
            "keys": "limit 4 per key, 50 keys",
        }
        for case in ("plain", "unreached", "keys"):
            result = _child.run_child(script, "backlog", case, str(args.runs))
            print(f"| {labels[case]} | {result['runs_per_s']:,.0f} |")
        print()
    if "claims" in only:
        print("| `store.claim` of 32 due runs (one-step, no worker) | µs per claim, p50 |")
        print("|---|---:|")
        for case, label in (("plain", "no limit"), ("unreached", "limit never reached")):
            result = _child.run_child(script, "claims", case, str(args.runs))
            print(f"| {label} | {result['claim_p50_us']:,.0f} |")
        print()
    if "hot" in only:
        result = _child.run_child(script, "hot", str(args.hot), "100")
        print(f"| hot key: {args.hot:,} runs, limit 4 | seconds |")
        print("|---|---:|")
        print(
            f"| 100 runs of 10 other keys, started after them, all done | {result['cold_s']:.2f} |"
        )
        print(f"| hot runs not yet done by then | {result['hot_left']:,} |")
        print(f"| the hot key's backlog done | {result['hot_s']:.2f} |")


if __name__ == "__main__":
    main()
