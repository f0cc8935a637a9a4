"""The reference shop under a rising open-loop load, with load shedding and without it.

For each side, a fresh shop (its providers, `sagaway shop serve`, workers; SQLite) takes a
stepped load of customers walking the whole checkout (catalog, create, customer, confirm,
purchase), sending over the sale's lean HTTP client (`sale_against(..., lean_client=True)`;
httpx would make the generator the bottleneck): each step offers `rate` customers a second
for `--step` seconds whatever the shop's state. Per step the table shows the purchases
accepted per second (goodput: purchases whose first 202 came back during the step), the p99
latency of the requests the shop served (2xx and 3xx; a shed request is counted, not timed)
and how many were shed (503) or got no answer within 10 s. The "sustained" line is the most
purchases per second of a step whose p99 stayed under 500 ms. "gen lag" is the p99 of how
late the load generator's event loop woke up: the latencies include it, so a large one says
the generator itself was short of CPU. "shop wait" is the p99 of how long the shop took to
answer `GET /health`, asked four times a second from a thread of its own: that route does no
work and is never shed, so its time is the queue in front of the shop's routes (socket,
event loop, thread pool). Without shedding the queue grows past the shop's capacity and
every request waits in it; with shedding the excess should be refused at once and what is
admitted stay fast.

    python bench/shop.py                          # steps 4 8 16 32 48 customers/s, 15 s each
    python bench/shop.py --rates 5 10 20 --step 10
    python bench/shop.py --first off             # the side without shedding first
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from sagaway.observe.metrics._series import percentile
from sagaway.shop.sale import Phase, SaleOptions, SalePlan, sale_against
from sagaway.shop.sale._cluster import PROVIDERS, Cluster

P99_TARGET = 0.5  # seconds


@dataclass
class Step:
    rate: float
    goodput: float
    p99: float | None
    shed: int
    lost: int
    requests: int
    lag: float | None  # p99 of how late the generator's event loop woke up, seconds
    wait: float | None  # p99 of how long the shop took to answer GET /health, seconds


class Probe:
    """GET /health four times a second from a thread: (monotonic time, seconds) per answer,
    10 s for none."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as http:
            while not self._stop.wait(0.25):
                began = time.monotonic()
                try:
                    http.get("/health")
                    took = time.monotonic() - began
                except httpx.HTTPError:
                    took = 10.0
                self.times.append((began, took))


def run_side(rates: list[float], step: float, shedding: bool, workers: int) -> list[Step]:
    where = Path(tempfile.mkdtemp(prefix="sagaway-bench-shop-"))
    try:
        phases = tuple(
            Phase(f"{rate:g}/s", step, rate, "", double_click_share=0.0) for rate in rates
        )
        plan = SalePlan("bench", phases, drain_seconds=30.0)
        db = f"sqlite:///{where / 'shop.db'}"
        options = SaleOptions(plan, db, where, workers=workers, shedding=shedding)
        with Cluster(db, where, workers, shedding, stock=plan.stock()) as cluster:
            providers = {name: cluster.urls[name] for name in PROVIDERS}
            quiet = Console(quiet=True)  # no progress lines between the benchmark's own
            with Probe(cluster.shop_url) as probe:
                run = asyncio.run(
                    sale_against(
                        cluster.shop_url, providers, options, cluster, quiet, lean_client=True
                    )
                )
        steps = []
        for phase, began, ended, _ in run.phase_spans:
            mine = [s for s in run.recorder.samples if s.phase == phase.name]
            served = [s.latency for s in mine if 200 <= s.status < 400]
            lags = [lag for name, lag in run.recorder.lags if name == phase.name]
            start = run.recorder.started
            waits = [t for at, t in probe.times if began <= at - start < ended]
            bought = sum(1 for p in run.recorder.accepted_in.values() if p == phase.name)
            steps.append(
                Step(
                    rate=phase.rate,
                    goodput=bought / max(ended - began, 1e-9),
                    p99=percentile(served, 99) if served else None,
                    shed=sum(1 for s in mine if s.status == 503),
                    lost=sum(1 for s in mine if s.status == 0),
                    requests=len(mine),
                    lag=percentile(lags, 99) if lags else None,
                    wait=percentile(waits, 99) if waits else None,
                )
            )
        return steps
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _cell(s: Step) -> str:
    p99 = "-" if s.p99 is None else f"{s.p99 * 1000:,.0f} ms"
    lag = "-" if s.lag is None else f"{s.lag * 1000:,.0f} ms"
    wait = "-" if s.wait is None else f"{s.wait * 1000:,.0f} ms"
    return f"{s.goodput:6.1f}/s {p99:>9} {s.shed:6,} {s.lost:5,} {lag:>8} {wait:>9}"


def _sustained(steps: list[Step]) -> str:
    good = [s for s in steps if s.p99 is not None and s.p99 < P99_TARGET]
    if not good:
        return "none"
    best = max(good, key=lambda s: s.goodput)
    return f"{best.goodput:.1f} purchases/s (offered {best.rate:g} customers/s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[4, 8, 16, 32, 48])
    parser.add_argument("--step", type=float, default=15.0, help="seconds per step")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--first",
        choices=("on", "off"),
        default="on",
        help="which side runs first (the machine may be busier for one of them)",
    )
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f" at start; SQLite, {args.workers} worker(s), {args.step:g} s per step"
    )
    sides: dict[bool, list[Step]] = {}
    for shedding in (True, False) if args.first == "on" else (False, True):
        sides[shedding] = run_side(args.rates, args.step, shedding=shedding, workers=args.workers)
        print(
            f"shedding {'on' if shedding else 'off'} done; load average "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
    on, off = sides[True], sides[False]
    head = f"{'purchases':>9} {'p99':>9} {'503s':>6} {'lost':>5} {'gen lag':>8} {'shop wait':>9}"
    print(f"{'offered':>12}  {'shedding on':^51}  {'shedding off':^51}")
    print(f"{'customers/s':>12}  {head}  {head}")
    for a, b in zip(on, off, strict=True):
        print(f"{a.rate:>12g}  {_cell(a)}  {_cell(b)}")
    print(f"sustained at p99 < {P99_TARGET * 1000:.0f} ms: shedding on  {_sustained(on)}")
    print(f"{'':>31}shedding off {_sustained(off)}")
    print("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + " at end")


if __name__ == "__main__":
    main()
