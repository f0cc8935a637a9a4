"""Pruning ended runs: `SqliteStore.prune_runs` on a large store, with and without the
schema-4 indexes that keep each 500-run batch cheap, side by side in one run.

A SQLite store (synchronous=NORMAL) is filled with --runs succeeded runs, --old of them ended
long ago, each with one consumed signal; then the old ones are pruned. The write lock is held
for one batch at a time, so the time per batch is how long other writers may wait.

    python bench/retention.py                       # 200,000 runs, 50,000 old
    python bench/retention.py --runs 50000 --old 10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sagaway.store.sqlite import SqliteStore


def fill(runs: int, old: int, indexed: bool) -> SqliteStore:
    store = SqliteStore(str(Path(tempfile.mkdtemp()) / "retention.db"), synchronous="NORMAL")
    conn, now, long_ago = store._writer, time.time(), time.time() - 90 * 86400
    conn.execute("BEGIN IMMEDIATE")
    if not indexed:
        conn.execute("DROP INDEX sagaway_runs_ended")
        conn.execute("DROP INDEX sagaway_signals_run")
    conn.executemany(
        "INSERT INTO sagaway_runs (id, saga, idem_key, input, input_hash, status, created_at, "
        "updated_at, due_at, owner, epoch) VALUES (?, 'checkout', NULL, '[]', 'h', "
        "'succeeded', ?, ?, NULL, NULL, 1)",
        ((f"run-{i:08d}", *(2 * [long_ago if i < old else now])) for i in range(runs)),
    )
    conn.executemany(
        "INSERT INTO sagaway_signals (run_id, name, payload, sent_at, consumed_at) "
        "VALUES (?, 'confirm', '{}', ?, 1)",
        ((f"run-{i:08d}", now) for i in range(runs)),
    )
    conn.execute("COMMIT")
    return store


def measure(runs: int, old: int, indexed: bool) -> tuple[int, float, int]:
    store = fill(runs, old, indexed)
    try:
        batches = store.commit_stats[0]
        start = time.perf_counter()
        pruned = store.prune_runs(time.time() - 86400, ["succeeded"])
        seconds = time.perf_counter() - start
        return pruned, seconds, store.commit_stats[0] - batches
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200_000, help="runs in the store")
    parser.add_argument("--old", type=int, default=50_000, help="of them, ended 90 days ago")
    args = parser.parse_args()
    print(f"{args.runs:,} succeeded runs with a signal each, {args.old:,} ended 90 days ago")
    print(f"{'indexes':<26}{'pruned':>9}{'seconds':>9}{'batches':>9}{'ms per batch':>14}")
    rows = {}
    for indexed in (True, False):
        pruned, seconds, batches = measure(args.runs, args.old, indexed)
        if pruned != args.old:
            print(f"pruned {pruned} runs, expected {args.old}", file=sys.stderr)
            return 1
        rows[indexed] = seconds / batches
        label = "schema 4 (with)" if indexed else "without the two indexes"
        print(f"{label:<26}{pruned:>9,}{seconds:>9.2f}{batches:>9}{rows[indexed] * 1e3:>14.1f}")
    print(f"the indexes make each batch {rows[False] / rows[True]:.0f}x cheaper")
    return 0


if __name__ == "__main__":
    sys.exit(main())
