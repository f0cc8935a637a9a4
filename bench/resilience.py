"""Overhead per call of sagaway's resilience primitives, beside a bare call and the peers.

Run: .venv/bin/python bench/resilience.py [--calls N] [--repeat R]

Every row times the same trivial function (it returns a constant) called through a
primitive; "overhead" subtracts the bare call's time, so it is what the primitive costs.
Each figure is the best of R runs of N calls (the least disturbed run on a shared
machine). Peers are measured on the features they share: pybreaker for the breaker's
closed and open paths, tenacity for retrying. The breaker's closed-path target is
< 2 us of overhead per call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import sys
import time
import timeit
from collections.abc import Callable

try:
    import pybreaker
    import tenacity
except ImportError as missing:  # pragma: no cover - depends on the environment
    sys.exit(f"bench/resilience.py needs the bench extra ({missing}): pip install -e '.[bench]'")

from sagaway.resilience import (
    BreakerOpen,
    Bulkhead,
    CircuitBreaker,
    RateLimiter,
    Retry,
    TimeWindow,
)

TARGET_US = 2.0


def answer() -> int:
    return 42


async def answer_async() -> int:
    return 42


def best_us(fn: Callable[[], object], calls: int, repeat: int) -> float:
    """Best per-call time of `fn` in microseconds."""
    return min(timeit.repeat(fn, number=calls, repeat=repeat)) / calls * 1e6


def best_async_us(fn: Callable[[], object], calls: int, repeat: int) -> float:
    """Best per-call time of awaiting `fn()` in microseconds, inside one event loop."""

    async def run() -> float:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(calls):
                await fn()  # type: ignore[misc]
            best = min(best, time.perf_counter() - start)
        return best

    return asyncio.run(run()) / calls * 1e6


def refused(
    fn: Callable[[], object], errors: tuple[type[BaseException], ...]
) -> Callable[[], None]:
    def call() -> None:
        try:
            fn()
        except errors:
            pass

    return call


def flaky_every_third() -> Callable[[], int]:
    """Fails twice, succeeds the third time, forever."""
    state = [0]

    def call() -> int:
        state[0] += 1
        if state[0] % 3:
            raise ConnectionError("flaky")
        return 42

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row (best is kept)")
    options = parser.parse_args()
    calls, repeat = options.calls, options.repeat

    ours_breaker = CircuitBreaker("bench")(answer)
    ours_breaker_time = CircuitBreaker("bench-time", window=TimeWindow(60))(answer)
    call_breaker = CircuitBreaker("bench-call")
    peer_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)(answer)
    ours_open = CircuitBreaker("bench-open")
    logging.getLogger("sagaway.resilience").setLevel(logging.ERROR)
    ours_open.force_open()
    peer_open = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    peer_open.open()
    ours_bulkhead = Bulkhead("bench", max_concurrent=64)(answer)
    ours_limiter = RateLimiter("bench", rate=1e12, burst=1e12)(answer)
    ours_retry = Retry(attempts=3)(answer)
    peer_retry = tenacity.retry(stop=tenacity.stop_after_attempt(3))(answer)
    ours_retry_flaky = Retry(attempts=3, base=0, jitter="none")(flaky_every_third())
    peer_retry_flaky = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none()
    )(flaky_every_third())
    ours_breaker_async = CircuitBreaker("bench-async")(answer_async)
    ours_bulkhead_async = Bulkhead("bench-async", max_concurrent=64)(answer_async)

    bare = best_us(answer, calls, repeat)
    bare_async = best_async_us(answer_async, calls, repeat)
    few = max(1, calls // 50)  # rows that fail and retry cost ~100x more per call
    rows: list[tuple[str, float, float, str, float | None, float | None]] = []

    def row(feature: str, ours: float, peer_name: str = "", peer: float | None = None) -> None:
        base = bare_async if feature.startswith("async") else bare
        peer_overhead = None if peer is None else peer - base
        rows.append((feature, ours, ours - base, peer_name, peer, peer_overhead))

    closed = best_us(ours_breaker, calls, repeat)
    peer_closed = best_us(peer_breaker, calls, repeat)
    row("breaker, closed path (decorator)", closed, "pybreaker", peer_closed)
    row("breaker, closed path (.call)", best_us(lambda: call_breaker.call(answer), calls, repeat))
    row("breaker, closed, 60 s time window", best_us(ours_breaker_time, calls, repeat))
    ours_refusal = refused(lambda: ours_open.call(answer), (BreakerOpen,))
    peer_refusal = refused(lambda: peer_open.call(answer), (pybreaker.CircuitBreakerError,))
    row(
        "breaker, open: refuse the call",
        best_us(ours_refusal, calls // 4, repeat),
        "pybreaker",
        best_us(peer_refusal, calls // 4, repeat),
    )
    row("bulkhead, free slot", best_us(ours_bulkhead, calls, repeat))
    row("rate limiter, token available", best_us(ours_limiter, calls, repeat))
    row(
        "retry, success at first try",
        best_us(ours_retry, calls, repeat),
        "tenacity",
        best_us(peer_retry, calls, repeat),
    )
    row(
        "retry, 2 failures then success",
        best_us(ours_retry_flaky, few, repeat),
        "tenacity",
        best_us(peer_retry_flaky, few, repeat),
    )
    row("async breaker, closed path", best_async_us(ours_breaker_async, calls, repeat))
    row("async bulkhead, free slot", best_async_us(ours_bulkhead_async, calls, repeat))

    print(
        f"sagaway resilience overhead per call  (python {platform.python_version()}, "
        f"{platform.machine()}, best of {repeat} runs of {calls:,} calls; {few:,} for retries)"
    )
    print(f"bare call: {bare:.3f} us    bare await: {bare_async:.3f} us")
    header = (
        f"{'feature':<34} {'sagaway us':>10} {'overhead us':>11}  "
        f"{'peer':<10} {'peer us':>8} {'peer overhead':>13} {'peer/ours':>9}"
    )
    print(header)
    print("-" * len(header))
    for feature, ours, overhead, peer_name, peer, peer_overhead in rows:
        line = f"{feature:<34} {ours:>10.3f} {overhead:>11.3f}  "
        if peer is not None and peer_overhead is not None:
            line += f"{peer_name:<10} {peer:>8.3f} {peer_overhead:>13.3f} {peer / ours:>8.1f}x"
        print(line.rstrip())
    overhead = closed - bare
    verdict = "met" if overhead < TARGET_US else "NOT MET"
    print(f"\nbreaker closed-path overhead {overhead:.3f} us; target < {TARGET_US:g} us: {verdict}")
    return 0 if overhead < TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
