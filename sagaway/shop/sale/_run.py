"""`run_sale`: start the shop, run the phases against it, drain, audit, report."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from sagaway.shop.sale._audit import Audit, audit, drain, store_figures
from sagaway.shop.sale._cluster import PROVIDERS, Cluster
from sagaway.shop.sale._gray import GrayWatch
from sagaway.shop.sale._load import CONNECTIONS, Customers, Recorder
from sagaway.shop.sale._plan import FAULT_OFF, Phase, SalePlan
from sagaway.shop.sale._progress import Progress
from sagaway.shop.sale._wire import WireClient

__all__ = ["SaleOptions", "SaleRun", "run_sale", "sale_against"]


@dataclass(frozen=True)
class SaleOptions:
    """How to run a sale: the plan, the store, how many workers, where to write, the seed of
    the customers' choices, and whether the shop sheds load."""

    plan: SalePlan
    db_url: str
    out: Path
    workers: int = 1
    seed: int = 7
    shedding: bool = True


@dataclass
class SaleRun:
    """What one sale produced: the customers' view, the timeline and the audit."""

    options: SaleOptions
    recorder: Recorder
    started_at: float = field(default_factory=time.time)
    events: list[tuple[float, str]] = field(default_factory=list)
    shop_samples: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    phase_spans: list[tuple[Phase, float, float, int]] = field(default_factory=list)
    audit: Audit | None = None
    leftover_customers: int = 0
    gray: GrayWatch | None = None

    def event(self, text: str) -> None:
        """Note something that happened now on the timeline."""
        self.events.append((self.recorder.now(), text))


async def _set_faults(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> None:
    response = await client.put(f"{url}/_faults", json=body)
    response.raise_for_status()


async def _watch_shop(client: httpx.AsyncClient, run: SaleRun, stop: asyncio.Event) -> None:
    """Read `/_shop/stats` once a second for the timeline (the shop's limit and shedding)."""
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = await client.get("/_shop/stats", timeout=2.0)
            if response.status_code == 200:
                run.shop_samples.append((run.recorder.now(), response.json()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _crash_worker(cluster: Cluster | None, run: SaleRun, phase: Phase) -> None:
    """SIGKILL a worker, and start it again `phase.restart_after` seconds later."""
    if cluster is None or not cluster.worker_children:
        run.event("no worker of the sale's own to kill: skipped")
        return
    child = await asyncio.to_thread(cluster.kill_worker)
    run.event(f"{child.name} SIGKILLed")
    await asyncio.sleep(phase.restart_after)
    await asyncio.to_thread(child.start)
    run.event(f"{child.name} restarted")


async def sale_against(
    shop_url: str,
    providers: dict[str, str],
    options: SaleOptions,
    cluster: Cluster | None = None,
    console: Console | None = None,
    *,
    lean_client: bool = True,
) -> SaleRun:
    """Run the plan's phases against a shop already listening at `shop_url` whose providers
    are at `providers` (name -> URL); drain and audit. `cluster`, when given, is the sale's
    own processes (a worker of it is killed in the crash phase). `lean_client` (the default):
    the customers send over `WireClient`; False sends over httpx, whose CPU per request
    makes the generator, not the shop, the bottleneck past about 150 requests a second."""
    recorder = Recorder()
    run = SaleRun(options, recorder)
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    timeout = httpx.Timeout(10.0, connect=5.0, pool=None)
    async with (
        httpx.AsyncClient(base_url=shop_url, limits=limits, timeout=timeout) as client,
        httpx.AsyncClient(timeout=timeout) as control,
        httpx.AsyncClient(base_url=shop_url, timeout=timeout) as watch,
    ):
        wire = WireClient(shop_url, timeout=10.0)
        customers = Customers(
            wire if lean_client else client, recorder, random.Random(options.seed)
        )
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_shop(watch, run, stop))
        crashes: list[asyncio.Task[None]] = []
        with Progress(run, console) as progress:
            ticker = asyncio.create_task(progress.ticking(stop))
            lag = asyncio.create_task(recorder.watch_lag(stop))
            run.gray = GrayWatch(options.db_url, providers["payment"])
            gray = asyncio.create_task(run.gray.run(stop))
            for phase in options.plan.phases:
                # The faults first, all providers at once: the phase starts when they hold.
                await asyncio.gather(
                    *(
                        _set_faults(control, url, phase.faults.get(name, FAULT_OFF))
                        for name, url in providers.items()
                    )
                )
                recorder.phase = phase.name
                began, arrivals = recorder.now(), recorder.arrivals
                run.event(f"phase {phase.name}: {phase.description}")
                for name, body in phase.faults.items():
                    run.event(f"{name} faults: {body['mode']}")
                if phase.kill_worker:
                    crashes.append(asyncio.create_task(_crash_worker(cluster, run, phase)))
                await customers.run_phase(phase)
                run.phase_spans.append((phase, began, recorder.now(), recorder.arrivals - arrivals))
            await asyncio.gather(
                *(_set_faults(control, url, FAULT_OFF) for url in providers.values())
            )
            recorder.phase = "drain"
            run.event("load over: every provider healthy; draining")
            run.leftover_customers = await customers.finish(options.plan.drain_seconds / 2)
            await wire.aclose()
            for task in crashes:
                await task
            progress.note("waiting for orders to end")
            orders, took = await drain(client, providers, recorder, options.plan.drain_seconds)
            run.event(f"drained in {took:.1f} s")
            stop.set()
            await watcher
            await ticker
            await lag
            await gray
            run.audit = await audit(client, providers, recorder, orders)
            run.audit.drained_in = took
    return run


def run_sale(options: SaleOptions, console: Console | None = None) -> int:
    """Start the processes, run the sale, write `report.json` and `report.html` under
    `options.out`, print the report; 0 when every invariant holds, else 1."""
    from sagaway.shop.sale._report import build_report, print_report, write_report
    from sagaway.shop.sale._slo import evaluate_sale_slos

    # Tables as wide as they need (up to 140 columns) when the output is not a terminal.
    console = console or (Console() if sys.stdout.isatty() else Console(width=140))
    # SIGTERM stops the sale like Ctrl-C: the processes it started are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(
        options.db_url,
        out,
        workers=options.workers,
        shedding=options.shedding,
        stock=options.plan.stock(),
    )
    console.print(f"starting the providers, the shop and {options.workers} worker(s) in {out}")
    with cluster:
        console.print(f"shop listening on {cluster.shop_url}; the {options.plan.name} sale starts")
        providers = {name: cluster.urls[name] for name in PROVIDERS}
        run = asyncio.run(sale_against(cluster.shop_url, providers, options, cluster, console))
    slo = evaluate_sale_slos(cluster.access_log, out)
    store = store_figures(options.db_url, run.started_at - 1)
    report = build_report(run, slo, store, cluster.access_log)
    write_report(report, out)
    print_report(report, console)
    return 0 if report["ok"] else 1
