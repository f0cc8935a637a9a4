"""AdaptiveLimit against fixed limits, in front of a service driven beyond its capacity.

Run: .venv/bin/python bench/adaptive.py [--seconds S] [--capacity C] [--service-ms MS]
     [--overload X]

The service holds `C` calls at once (an asyncio semaphore: the rest queue first come, first
served), each taking `MS` ms (uniform within +-20 %): it completes about C / MS calls per
second. Callers arrive at X times that rate (open loop, evenly spaced) and give up after 10
service times (the call is cancelled and leaves the queue). Each caller first asks the limit
for a permit: refused, it is shed at once (the fast 503 of an edge limiter).

Two scenarios: "steady" keeps C; "slowdown" halves C halfway through (a dependency gets
slower: the same work now takes twice the capacity), so a fixed limit that was right becomes
too high. Rows: fixed limits too low (C/2), right (C) and too high (10 x C), AIMD (timeouts
are its drops) and gradient, all from their defaults; none of the adaptive ones is told C.

Columns: goodput (calls answered within the callers' timeout, per second, and as a share of
the service's capacity over the run), p50 / p99 latency of answered calls, the share shed by
the limit, the share that timed out after admission, and the limit's mean over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import sys
import time
from dataclasses import dataclass, field

from sagaway.resilience import AdaptiveLimit


@dataclass
class Tally:
    answered: list[float] = field(default_factory=list)
    shed: int = 0
    timed_out: int = 0
    offered: int = 0
    limits: list[int] = field(default_factory=list)


class Service:
    """`capacity` calls at once, `seconds` each (+-20 %); the rest wait in arrival order."""

    def __init__(self, capacity: int, seconds: float, rng: random.Random) -> None:
        self.capacity = capacity
        self.seconds = seconds
        self.rng = rng
        self._slots = asyncio.Semaphore(capacity)
        self._taken: list[asyncio.Task[bool]] = []  # slots taken away by slow_down()

    def slow_down(self) -> None:
        """Halve the capacity: take half the slots away for good."""
        for _ in range(self.capacity // 2):
            self._taken.append(asyncio.ensure_future(self._slots.acquire()))
        self.capacity -= self.capacity // 2

    async def call(self) -> None:
        async with self._slots:
            await asyncio.sleep(self.seconds * self.rng.uniform(0.8, 1.2))


async def caller(limit: AdaptiveLimit, service: Service, timeout: float, tally: Tally) -> None:
    permit = limit.try_acquire()
    if permit is None:
        tally.shed += 1
        return
    started = time.monotonic()
    try:
        await asyncio.wait_for(service.call(), timeout)
    except TimeoutError:
        tally.timed_out += 1
        permit.dropped()
        return
    tally.answered.append(time.monotonic() - started)
    permit.success()


async def drive(limit: AdaptiveLimit, args: argparse.Namespace, slowdown: bool) -> Tally:
    rng = random.Random(7)
    service_seconds = args.service_ms / 1000
    service = Service(args.capacity, service_seconds, rng)
    rate = args.overload * args.capacity / service_seconds
    timeout = 10 * service_seconds
    tally = Tally()
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    sent = 0
    slowed = False
    while (elapsed := time.monotonic() - start) < args.seconds:
        if slowdown and not slowed and elapsed >= args.seconds / 2:
            service.slow_down()
            slowed = True
        due = int(elapsed * rate) - sent  # evenly spaced arrivals, caught up each tick
        for _ in range(due):
            task = asyncio.create_task(caller(limit, service, timeout, tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent += due
        tally.limits.append(limit.limit)
        await asyncio.sleep(0.002)
    tally.offered = sent
    if tasks:
        await asyncio.wait(tasks)
    return tally


def limits(capacity: int) -> list[tuple[str, AdaptiveLimit]]:
    def fixed(n: int) -> AdaptiveLimit:
        return AdaptiveLimit("aimd", initial=n, min_limit=n, max_limit=n, name=f"fixed {n}")

    return [
        (f"fixed {capacity // 2} (too low)", fixed(capacity // 2)),
        (f"fixed {capacity} (right)", fixed(capacity)),
        (f"fixed {capacity * 10} (too high)", fixed(capacity * 10)),
        ("aimd (defaults)", AdaptiveLimit("aimd", name="aimd")),
        ("gradient (defaults)", AdaptiveLimit("gradient", name="gradient")),
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per row")
    parser.add_argument("--capacity", type=int, default=20, help="calls the service holds")
    parser.add_argument("--service-ms", type=float, default=20.0, help="ms per call")
    parser.add_argument("--overload", type=float, default=2.0, help="offered / capacity")
    args = parser.parse_args()
    if args.capacity < 2 or args.seconds <= 0 or args.service_ms <= 0 or args.overload <= 0:
        parser.error("--capacity must be >= 2; --seconds, --service-ms, --overload > 0")
    per_second = args.capacity / (args.service_ms / 1000)
    print(
        f"python {platform.python_version()} on {platform.system()}; service: {args.capacity} "
        f"at once x {args.service_ms:g} ms = {per_second:.0f} calls/s; offered "
        f"{args.overload:g}x that for {args.seconds:g} s per row; callers time out after "
        f"{10 * args.service_ms:g} ms"
    )
    for scenario in ("steady", "slowdown"):
        capacity_calls = per_second * args.seconds
        if scenario == "slowdown":
            capacity_calls *= 0.75  # full for half the run, half for the other half
            print(f"\nslowdown: the service's capacity halves after {args.seconds / 2:g} s")
        else:
            print("\nsteady")
        header = (
            f"{'limit':<24}{'goodput/s':>10}{'of cap.':>9}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'shed':>8}{'timeouts':>10}{'mean limit':>12}"
        )
        print(header)
        print("-" * len(header))
        for label, limit in limits(args.capacity):
            tally = asyncio.run(drive(limit, args, slowdown=scenario == "slowdown"))
            answered = len(tally.answered)
            goodput = answered / args.seconds
            mean_limit = sum(tally.limits) / max(1, len(tally.limits))
            offered = max(1, tally.offered)
            print(
                f"{label:<24}{goodput:>10.0f}{answered / capacity_calls:>9.0%}"
                f"{percentile(tally.answered, 0.5) * 1000:>9.1f}"
                f"{percentile(tally.answered, 0.99) * 1000:>9.1f}"
                f"{tally.shed / offered:>8.0%}{tally.timed_out / offered:>10.0%}"
                f"{mean_limit:>12.1f}"
            )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
