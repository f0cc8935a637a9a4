"""Metric-filter throughput on 1 million JSON log lines, against a hand-written loop.

The floor is what a user would otherwise write: `json.loads` every line and test the
condition in Python. Each case runs the same condition both ways over the same lines
(generated deterministically here), checks that both find the same matches, and prints
lines per second side by side: the best wall-clock time of `--repeat` runs of each,
alternating. The last column is the speed-up in CPU time of this process, which time spent
waiting for a core does not inflate: where it disagrees with the wall-clock speed-up, other
work on the machine disturbed the row.

    python bench/filters.py [--lines 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable

from sagaway.observe.filters import FilterPattern, MetricFilter

PATHS = ["/api/cart", "/api/checkout", "/api/orders/42", "/static/app.js", "/web/home"]
STATUSES = [200] * 12 + [201, 204, 301, 304, 400, 404]


def generate(count: int, seed: int = 42) -> list[str]:
    """Shop access-log lines as JSON; about 2% are 5xx."""
    rng = random.Random(seed)
    start = 1_714_564_800
    lines = []
    for i in range(count):
        status = rng.choice((500, 502, 503)) if rng.random() < 0.02 else rng.choice(STATUSES)
        ts = start + i * 0.06
        lines.append(
            json.dumps(
                {
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
                    + f".{int(ts % 1 * 1000):03d}Z",
                    "level": "error" if status >= 500 else "info",
                    "method": rng.choice(("GET", "GET", "POST")),
                    "path": rng.choice(PATHS),
                    "status": status,
                    "latency_ms": round(rng.uniform(1, 400), 1),
                    "user": f"u{rng.randrange(5000)}",
                    "request_id": f"{rng.getrandbits(64):016x}",
                    "msg": "request served",
                }
            )
        )
    return lines


def naive_api_5xx(lines: list[str]) -> float:
    count = 0
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        status, path = doc.get("status"), doc.get("path")
        ok = isinstance(status, int) and status >= 500
        if ok and isinstance(path, str) and path.startswith("/api/"):
            count += 1
    return count


def naive_latency_of_5xx(lines: list[str]) -> float:
    total = 0.0
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        status = doc.get("status")
        if isinstance(status, int) and status >= 500:
            total += float(doc.get("latency_ms", 0))
    return total


def naive_latency_of_every_line(lines: list[str]) -> float:
    total = 0.0
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        latency = doc.get("latency_ms")
        if isinstance(latency, int | float) and not isinstance(latency, bool):
            total += float(latency)
    return total


def naive_every_line(lines: list[str]) -> float:
    count = 0
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        status = doc.get("status")
        if isinstance(status, int) and status >= 100:
            count += 1
    return count


def sagaway_matches(pattern: str) -> Callable[[list[str]], float]:
    def run(lines: list[str]) -> float:
        # Compiled in each run, so that no state (caches, the adaptive pre-check) carries
        # over from one run to the next: the hand-written loop starts cold every time too.
        matches = FilterPattern(pattern).matches
        return sum(1 for line in lines if matches(line))

    return run


def sagaway_metric(pattern: str, value: str) -> Callable[[list[str]], float]:
    def run(lines: list[str]) -> float:
        metric = MetricFilter("m", pattern, value=value)
        observe = metric.observe
        total = 0.0
        for line in lines:
            v = observe(line)
            if v is not None:
                total += v
        return total

    return run


def reference(pattern: str) -> Callable[[list[str]], float]:
    compiled = FilterPattern(pattern)

    def run(lines: list[str]) -> float:
        return sum(1 for line in lines if compiled.reference(line) is not None)

    return run


def timed(fn: Callable[[list[str]], float], lines: list[str]) -> tuple[float, float, float]:
    """Wall-clock seconds, CPU seconds of this process, and the result of `fn(lines)`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(lines)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def side_by_side(
    naive: Callable[[list[str]], float],
    ours: Callable[[list[str]], float],
    lines: list[str],
    repeat: int,
) -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]]:
    """`repeat` timings of each, the runs alternating so that a burst of load from
    elsewhere on the machine does not fall on one side only."""
    naive_runs, our_runs = [], []
    for _ in range(repeat):
        naive_runs.append(timed(naive, lines))
        our_runs.append(timed(ours, lines))
    return naive_runs, our_runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {_load()} at start"
    )
    t = time.perf_counter()
    lines = generate(args.lines)
    print(
        f"generated {len(lines):,} JSON lines in {time.perf_counter() - t:.1f}s "
        f"(~{sum(map(len, lines)) / len(lines):.0f} bytes each)"
    )
    cases = [
        (
            '{ $.status >= 500 && $.path = "/api/*" }  (count)',
            naive_api_5xx,
            sagaway_matches('{ $.status >= 500 && $.path = "/api/*" }'),
        ),
        (
            "{ $.status >= 500 }  value $.latency_ms",
            naive_latency_of_5xx,
            sagaway_metric("{ $.status >= 500 }", "$.latency_ms"),
        ),
        (
            "{ $.status >= 100 }  (every line matches)",
            naive_every_line,
            sagaway_matches("{ $.status >= 100 }"),
        ),
        (
            "{ $.latency_ms = * }  value $.latency_ms (every line)",
            naive_latency_of_every_line,
            sagaway_metric("{ $.latency_ms = * }", "$.latency_ms"),
        ),
    ]
    header = (
        f"{'condition':<54} {'json.loads+if':>14} {'sagaway':>12} {'speed-up':>9} "
        f"{'(CPU time)':>10}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for name, naive, ours in cases:
        naive_runs, our_runs = side_by_side(naive, ours, lines, args.repeat)
        naive_result, our_result = naive_runs[-1][2], our_runs[-1][2]
        if abs(naive_result - our_result) > 1e-6 * max(1.0, abs(naive_result)):
            print(f"MISMATCH in {name}: {naive_result} vs {our_result}")
            ok = False
        naive_wall, our_wall = min(r[0] for r in naive_runs), min(r[0] for r in our_runs)
        naive_cpu, our_cpu = min(r[1] for r in naive_runs), min(r[1] for r in our_runs)
        print(
            f"{name:<54} {len(lines) / naive_wall / 1e6:>10.2f} M/s "
            f"{len(lines) / our_wall / 1e6:>8.2f} M/s {naive_wall / our_wall:>8.2f}x "
            f"{naive_cpu / our_cpu:>9.2f}x"
        )
    ref_time, _, _ = timed(reference('{ $.status >= 500 && $.path = "/api/*" }'), lines)
    print(
        f"{'(reference evaluator, parses every line)':<54} {'':>14} "
        f"{len(lines) / ref_time / 1e6:>8.2f} M/s"
    )
    print(f"load average {_load()} at end")
    return 0 if ok else 1


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
