"""`sagaway demo`: a shop checkout under load with injected faults, on a fresh SQLite file.

Simulated customers start checkouts (some click twice), fill in their details, confirm or
abandon their carts. Meanwhile the payment provider has an outage, the mail relay is flaky,
the provider sometimes loses a response after charging, and the worker process is killed
with SIGKILL and restarted. At the end the demo checks what must hold — no duplicate order
or charge, stock conserved, every charge matched by an order or a refund, every run ended —
and exits non-zero if anything does not.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ENDED = ("succeeded", "compensated", "failed", "cancelled")


@dataclass
class Scenario:
    """The load and the faults of one demonstration."""

    customers: int = 300
    seed: int = 7
    arrivals_over: float = 10.0  # seconds over which customers arrive
    outage: tuple[float, float] = (2.5, 5.5)  # payment provider down, seconds after start
    kill_at: float = 7.0  # SIGKILL the worker, seconds after start
    duplicate_rate: float = 0.15
    abandon_rate: float = 0.1
    mail_failure: float = 0.3
    lost_response: float = 0.05
    patience: float = 2.0  # seconds a checkout waits for the customer before giving up
    deadline: float = 50.0


@dataclass
class Tally:
    """What the customers saw."""

    started: dict[str, str] = field(default_factory=dict)  # cart -> run id
    duplicate_clicks: int = 0
    duplicate_runs: int = 0
    late_signals: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _prepare(directory: Path, scenario: Scenario, t0: float) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("sagaway.db", "shop.db"):
        for suffix in ("", "-wal", "-shm"):
            (directory / f"{name}{suffix}").unlink(missing_ok=True)
    env = {
        "SAGAWAY_DB": f"sqlite:///{directory / 'sagaway.db'}",
        "SAGAWAY_DEMO_SHOP": str(directory / "shop.db"),
        "SAGAWAY_DEMO_OUTAGE": f"{t0 + scenario.outage[0]},{t0 + scenario.outage[1]}",
        "SAGAWAY_DEMO_MAIL_FAILURE": str(scenario.mail_failure),
        "SAGAWAY_DEMO_LOST_RESPONSE": str(scenario.lost_response),
        "SAGAWAY_DEMO_PATIENCE": str(scenario.patience),
    }
    os.environ.update(env)
    return env


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sagaway.cli", "worker", "sagaway.demo.shop:app"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _customer(shop: Any, i: int, rng: random.Random, scenario: Scenario, tally: Tally) -> None:
    from sagaway.errors import InvalidRunState

    items = {sku: rng.randint(1, 2) for sku in rng.sample(sorted(shop.CATALOG), rng.randint(1, 2))}
    cart = {
        "id": f"cart-{i:04d}",
        "items": items,
        "total": sum(shop.PRICES[sku] * qty for sku, qty in items.items()),
    }
    clicks = 2 if rng.random() < scenario.duplicate_rate else 1
    abandons = rng.random() < scenario.abandon_rate
    thinking = [rng.uniform(0.05, 0.6), rng.uniform(0.05, 0.6)]
    ids = {shop.app.start(shop.checkout, cart, key=cart["id"]).id for _ in range(clicks)}
    with tally.lock:
        tally.started[cart["id"]] = next(iter(ids))
        tally.duplicate_clicks += clicks - 1
        tally.duplicate_runs += len(ids) - 1
    run_id = next(iter(ids))
    try:
        time.sleep(thinking[0])
        shop.app.signal(run_id, "customer_info", {"email": f"customer{i}@example.com"})
        if abandons:
            return
        time.sleep(thinking[1])
        shop.app.signal(run_id, "confirmed", {})
    except InvalidRunState:  # the checkout already ended (e.g. out of stock)
        with tally.lock:
            tally.late_signals += 1


def _checks(directory: Path, app: Any, tally: Tally, catalog: dict[str, int]) -> list[tuple]:
    """(invariant, holds, detail) for everything the demo promises."""
    conn = sqlite3.connect(directory / "shop.db")
    records = {r.key: r for r in app.store.list_runs(limit=100_000)}
    statuses = {key: r.status for key, r in records.items()}
    stock = dict(conn.execute("SELECT sku, available FROM stock"))
    held = {sku: 0 for sku in catalog}
    reservations = {}
    for cart_id, items, status in conn.execute("SELECT cart_id, items, status FROM reservations"):
        reservations[cart_id] = status
        if status in ("reserved", "sold"):
            for sku, qty in json.loads(items).items():
                held[sku] += qty
    charges: dict[str, int] = {}
    for cart_id, refunded in conn.execute("SELECT cart_id, refunded FROM charges"):
        charges[cart_id] = charges.get(cart_id, 0) + (0 if refunded else 1)
    mailed = {row[0] for row in conn.execute("SELECT DISTINCT cart_id FROM mails")}
    conn.close()
    succeeded = {k for k, s in statuses.items() if s == "succeeded"}
    unwound = {k for k, s in statuses.items() if s in ("compensated", "cancelled")}
    ended = all(s in ENDED for s in statuses.values()) and len(statuses) == len(tally.started)
    paid = all(charges.get(k, 0) == 1 and reservations.get(k) == "sold" for k in succeeded)
    refunded = all(charges.get(k, 0) == 0 and reservations.get(k) != "reserved" for k in unwound)
    return [
        ("every checkout ended", ended, f"{len(statuses)} runs for {len(tally.started)} carts"),
        (
            "no duplicate orders",
            tally.duplicate_runs == 0 and len(records) == len(tally.started),
            f"{tally.duplicate_clicks} double clicks, {tally.duplicate_runs} extra runs",
        ),
        (
            "no double charge",
            all(n <= 1 for n in charges.values()),
            f"{sum(1 for n in charges.values() if n > 1)} carts charged twice",
        ),
        (
            "stock conserved",
            all(stock[s] + held[s] == catalog[s] for s in catalog),
            ", ".join(f"{s}: {stock[s]} + {held[s]} = {catalog[s]}" for s in catalog),
        ),
        (
            "orders paid, unwound carts refunded and released",
            paid and refunded,
            f"{len(succeeded)} paid, {len(unwound)} refunded/released",
        ),
        ("every order confirmed by mail", succeeded <= mailed, f"{len(mailed)} mails"),
    ]


def run_demo(
    directory: str = "demo-data", scenario: Scenario | None = None, console: Console | None = None
) -> int:
    """Run the demonstration; return 0 if every invariant held, 1 otherwise."""
    scenario = scenario or Scenario()
    console = console or Console()
    where = Path(directory).resolve()
    t0 = time.time()
    env = _prepare(where, scenario, t0)
    from sagaway.demo import shop  # reads SAGAWAY_DB now that it is set

    shop.create_shop(env["SAGAWAY_DEMO_SHOP"])
    app = shop.app
    if app.url != env["SAGAWAY_DB"]:
        raise RuntimeError("run the demo in a fresh process (`sagaway demo`)")
    console.print(
        f"[bold]sagaway demo[/bold]: {scenario.customers} customers check out over "
        f"{scenario.arrivals_over:.0f} s on {where / 'sagaway.db'}\n"
        f"faults: payment outage at {scenario.outage[0]:.0f} to {scenario.outage[1]:.0f} s, "
        f"{scenario.mail_failure:.0%} of mails bounce, {scenario.lost_response:.0%} of charges "
        f"lose their response, {scenario.duplicate_rate:.0%} double clicks, "
        f"{scenario.abandon_rate:.0%} abandoned carts, worker SIGKILLed at {scenario.kill_at:.0f} s"
    )
    worker_log = where / "worker.log"
    worker_log.unlink(missing_ok=True)
    worker = _worker(env, worker_log)
    rng = random.Random(scenario.seed)
    plans = sorted((rng.uniform(0, scenario.arrivals_over), i) for i in range(scenario.customers))
    tally = Tally()
    kills = 0
    with (
        ThreadPoolExecutor(max_workers=48) as pool,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("checkouts ended", total=scenario.customers, note="")
        futures = []
        for offset, i in plans:
            seed = rng.random()

            def arrive(offset: float = offset, i: int = i, seed: float = seed) -> None:
                time.sleep(max(0.0, t0 + offset - time.time()))
                _customer(shop, i, random.Random(seed), scenario, tally)

            futures.append(pool.submit(arrive))
        while time.time() - t0 < scenario.deadline:
            elapsed = time.time() - t0
            if kills == 0 and elapsed >= scenario.kill_at:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                kills = 1
                worker = _worker(env, worker_log)
            counts = app.store.count_runs()
            ended = sum(counts.get(s, 0) for s in ENDED)
            notes = []
            if scenario.outage[0] <= elapsed < scenario.outage[1]:
                notes.append("[red]payment outage[/red]")
            if kills and elapsed < scenario.kill_at + 2:
                notes.append("[yellow]worker killed & restarted[/yellow]")
            note = " ".join(notes)
            progress.update(task, completed=ended, note=note)
            if ended >= scenario.customers and all(f.done() for f in futures):
                break
            time.sleep(0.1)
        for future in futures:
            future.result()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
    elapsed = time.time() - t0
    return _report(console, where, app, tally, shop.CATALOG, elapsed, kills, t0)


def _monitoring(console: Console, app: Any, t0: float) -> None:
    """State monitoring of the payment outage, at one-second periods: how many checkouts
    were parked at the charge step (waiting for the provider), sampled every second, through
    a metric alarm that notifies when the outage is noticed, reminds while it lasts, and
    says how long it lasted once it is over."""
    from sagaway.observe import AlarmState, MetricAlarm, Series
    from sagaway.observe.alarms import IncidentTracker, NotifyPolicy

    parked_since: dict[str, float] = {}
    for event in app.store.events(kind="parked", limit=1_000_000):
        if json.loads(event.data).get("step") == "charge":
            parked_since.setdefault(event.run_id, event.at)
    spans = []
    for run_id, since in parked_since.items():
        charged = [e.finished_at for e in app.store.journal(run_id) if e.name == "charge"]
        spans.append((since, charged[0] if charged else app.store.get_run(run_id).updated_at))
    end = max((until for _, until in spans), default=t0)
    waiting = Series(1.0)
    for second in range(int(t0), int(end) + 4):
        waiting.add(second, sum(1 for since, until in spans if since <= second + 0.5 < until))
    alarm = MetricAlarm(
        "payments-degraded",
        threshold=5,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        treat_missing="notBreaching",
        period=1.0,
        statistic="max",
    )
    tracker = IncidentTracker(alarm.name, period=1.0, policy=NotifyPolicy(renotify_every=2))
    state = AlarmState.INSUFFICIENT_DATA
    lines = []
    for second in range(int(t0) + 1, int(end) + 5):
        points = waiting.datapoints(second, alarm.evaluation_range or 4, "max")
        state = alarm.evaluate(points, previous=state)
        for note in tracker.update(state, float(second)):
            lines.append(f"  {second - t0:5.1f} s  {note.summary}")
    console.print(
        f"[bold]state monitoring[/bold]: alarm payments-degraded on checkouts parked at the "
        f"charge step ({alarm.describe()}):"
    )
    console.print("\n".join(lines) if lines else "  no notification")


def _report(
    console: Console,
    where: Path,
    app: Any,
    tally: Tally,
    catalog: dict,
    elapsed: float,
    kills: int,
    t0: float,
) -> int:
    counts = app.store.count_runs()
    events: dict[str, int] = {}
    retried: dict[str, int] = {}
    for event in app.store.events(limit=1_000_000):
        events[event.kind] = events.get(event.kind, 0) + 1
        if event.kind == "retry":
            step = json.loads(event.data).get("step", "?")
            retried[step] = retried.get(step, 0) + 1
    outcome = Table(title=f"outcome after {elapsed:.1f} s")
    outcome.add_column("runs")
    outcome.add_column("count", justify="right")
    for status in ("succeeded", "compensated", "failed", "cancelled", "waiting", "running"):
        if counts.get(status) or status in ("succeeded", "compensated", "failed"):
            outcome.add_row(status, str(counts.get(status, 0)))
    reasons: dict[str, int] = {}
    for record in app.store.list_runs(status="compensated", limit=100_000):
        doc = json.loads(record.error) if record.error else {}
        reason = f"  compensated: {doc.get('type', '?').rsplit('.', 1)[-1]}"
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda item: -item[1]):
        outcome.add_row(reason, str(n))
    outcome.add_row("worker processes SIGKILLed", str(kills))
    outcome.add_row("runs recovered from the killed worker", str(events.get("recovered", 0)))
    console.print(outcome)

    seen = Table(title="what the monitoring saw (events recorded by the engine)")
    seen.add_column("event")
    seen.add_column("count", justify="right")
    for step, n in sorted(retried.items()):
        seen.add_row(f"retries of {step}", str(n))
    for kind in ("parked", "compensating", "escalation", "recovered", "redriven"):
        if events.get(kind):
            seen.add_row(kind, str(events[kind]))
    console.print(seen)

    _monitoring(console, app, t0)
    checks = _checks(where, app, tally, catalog)
    verdict = Table(title="invariants")
    verdict.add_column("invariant")
    verdict.add_column("holds")
    verdict.add_column("detail")
    for name, holds, detail in checks:
        verdict.add_row(name, "[green]yes[/green]" if holds else "[red]NO[/red]", detail)
    console.print(verdict)
    console.print(
        f"inspect the runs: [bold]sagaway runs list --db {where / 'sagaway.db'}[/bold] "
        "(and `runs show ID`)"
    )
    app.close()
    return 0 if all(holds for _, holds, _ in checks) else 1
