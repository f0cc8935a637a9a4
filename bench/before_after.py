"""The same benchmarks on two source trees, interleaved, side by side: did a change cost speed?

Runs `bench/engine.py --only sagaway,overhead` and `bench/resilience.py` of each tree with
that tree first on the import path, alternating trees round by round (so that a busy spell of
the shared machine falls on both), and prints the median of each figure per tree and their
ratio. Make the "before" tree with `git worktree add /tmp/before <commit>`.

    python bench/before_after.py --before /tmp/before --after . [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ENGINE_ROW = re.compile(r"^\| sagaway \| WAL, synchronous=(\w+) \| ([\d,]+) \| ([\d,]+) \|$")
OVERHEAD = re.compile(r"p50 (\d+) µs, p99 (\d+) µs")
RESILIENCE_ROW = re.compile(r"^(\S.{33}) +([\d.]+) +(-?[\d.]+)")


def run(tree: Path, script: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, str(tree / "bench" / script), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode not in (0, 1):  # resilience.py exits 1 when its target is missed
        raise SystemExit(f"{tree}/bench/{script} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def figures(tree: Path, seconds: str, calls: str) -> dict[str, float]:
    """One round of both benchmarks on `tree`: figure name -> value."""
    found: dict[str, float] = {}
    for line in run(
        tree, "engine.py", "--only", "sagaway,overhead", "--seconds", seconds
    ).splitlines():
        if match := ENGINE_ROW.match(line):
            sync, seq, conc = match.groups()
            found[f"engine {sync}, sequential (sagas/s)"] = float(seq.replace(",", ""))
            found[f"engine {sync}, 16 threads (sagas/s)"] = float(conc.replace(",", ""))
        if match := OVERHEAD.search(line):
            found["per-step overhead p50 (µs)"] = float(match.group(1))
            found["per-step overhead p99 (µs)"] = float(match.group(2))
    for line in run(tree, "resilience.py", "--calls", calls, "--repeat", "3").splitlines():
        if (match := RESILIENCE_ROW.match(line)) and not line.startswith(("feature", "bare")):
            found[f"{match.group(1).strip()}, overhead (µs)"] = float(match.group(3))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older source tree")
    parser.add_argument("--after", type=Path, default=Path("."), help="the newer (default: .)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", default="3", help="per engine cell")
    parser.add_argument("--calls", default="100000", help="per resilience row")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for n in range(args.rounds):
        order = ("before", "after") if n % 2 == 0 else ("after", "before")
        for name in order:
            results[name].append(figures(trees[name], args.seconds, args.calls))
            print(f"round {n + 1}: {name} done", file=sys.stderr)
    names = [k for k in results["after"][0] if all(k in r for r in results["before"])]
    print(
        f"medians of {args.rounds} interleaved rounds; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores"
    )
    print("| figure | before | after | after / before |")
    print("|---|---:|---:|---:|")
    for key in names:
        before = statistics.median(r[key] for r in results["before"])
        after = statistics.median(r[key] for r in results["after"])
        ratio = f"{after / before:.2f}" if before else "-"
        print(f"| {key} | {before:,.3f} | {after:,.3f} | {ratio} |".replace(".000 |", " |"))


if __name__ == "__main__":
    main()
