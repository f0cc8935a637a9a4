"""The deploy gate's speed: `app.check_runs()` over N unfinished runs on SQLite, beside the
time the store takes just to read those runs and their journals (the floor: the gate cannot
be faster than reading what it replays). Target: 10,000 runs checked in under 30 s.

    python bench/gate.py [--runs 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sagaway import App


def build(path: Path, runs: int) -> App:
    app = App(f"sqlite:///{path}?synchronous=NORMAL", record_metrics=False)

    @app.step
    def reserve(order: str) -> str:
        return order

    @app.step
    def charge(order: str, amount: int) -> dict:
        return {"order": order, "amount": amount}

    @app.saga()
    def checkout(ctx, order: str, amount: int) -> dict:
        reserve(order)
        paid = charge(order, amount)
        ctx.wait("shipped")
        return paid

    with app:
        started = [app.start(checkout, f"o-{n}", n % 97) for n in range(runs)]
        deadline = time.monotonic() + 600
        while app.store.count_runs().get("waiting", 0) < runs and time.monotonic() < deadline:
            time.sleep(0.2)
    assert len(started) == runs
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "gate.db"
    app = build(path, args.runs)
    began = time.perf_counter()
    after, read = None, 0
    while chunk := app.store.runs_after("waiting", after, 500):
        after = chunk[-1].id
        read += sum(len(j) for j in app.store.journals([r.id for r in chunk]).values())
    floor = time.perf_counter() - began
    began = time.perf_counter()
    results = list(app.check_runs())
    gate = time.perf_counter() - began
    diverging = sum(d is not None for _, d in results)
    app.close()
    print(
        f"{len(results):,} unfinished runs waiting after two steps "
        f"({read:,} journal entries), SQLite"
    )
    print("| what | seconds | runs/s |")
    print("|---|---:|---:|")
    print(f"| floor: read the runs and journals | {floor:.2f} | {len(results) / floor:,.0f} |")
    print(f"| sagaway runs check (replay, no effect) | {gate:.2f} | {len(results) / gate:,.0f} |")
    verdict = "met" if gate < 30 and args.runs >= 10_000 else "see --runs"
    print(f"\n{diverging} would diverge; target 10,000 runs in < 30 s: {verdict}")


if __name__ == "__main__":
    main()
