"""The sale day as data: phases with an arrival rate, the provider faults in force and what
happens to the workers, for the full run and for `--quick`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAULT_OFF", "Phase", "SalePlan", "full_plan", "quick_plan"]

# What `PUT /_faults` takes to put a provider back to normal (left-out fields take the
# provider's own defaults, such as the mail provider's latency).
FAULT_OFF: dict[str, Any] = {"mode": "ok"}


@dataclass(frozen=True)
class Phase:
    """One period of the sale. Customers arrive at `rate` per second (Poisson arrivals,
    open loop: a slow shop does not slow the arrivals) for `seconds`. `faults` maps a provider
    (`payment`, `inventory`, `mail`) to the body of its `PUT /_faults` for the phase; the
    provider goes back to normal when the phase ends. `kill_worker` SIGKILLs one worker at the
    start and restarts it `restart_after` seconds later. `duplicate_share` is the share of
    customers who submit their whole purchase again with the same key after it was accepted;
    `double_click_share` the share who send the purchase twice at once (every phase)."""

    name: str
    seconds: float
    rate: float
    description: str
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    kill_worker: bool = False
    restart_after: float = 3.0
    duplicate_share: float = 0.0
    double_click_share: float = 0.05


@dataclass(frozen=True)
class SalePlan:
    """The phases in order and how long the end may wait for the backlog to drain."""

    name: str
    phases: tuple[Phase, ...]
    drain_seconds: float

    @property
    def load_seconds(self) -> float:
        """The length of the load, all phases together."""
        return sum(p.seconds for p in self.phases)

    @property
    def customers(self) -> int:
        """How many customers the phases bring, on average."""
        return round(sum(p.seconds * p.rate for p in self.phases))

    def stock(self) -> dict[str, int]:
        """The inventory at the start: a unit of tees and of caps per customer, and mugs for a
        quarter of them, so that mugs sell out during the sale (customers then find them out
        of stock, and checkouts that reserved too late compensate) while the other products
        last to the end and every phase still sells."""
        n = max(self.customers, 4)
        return {"mug": n // 4, "tee": n, "cap": n}


def _phases(base: float, unit: float) -> tuple[Phase, ...]:
    """The sale's story at `base` customers per second, phases `unit` seconds long (the outage
    and the spike a little longer: they are what the run is about)."""
    return (
        Phase("baseline", unit, base, "normal traffic: every provider healthy"),
        Phase(
            "spike", unit * 1.5, base * 10, "10x the customers: the shop sheds what it cannot take"
        ),
        Phase(
            "payment-quota",
            unit,
            base * 2,
            "the payment provider answers 429 beyond a small quota",
            faults={"payment": {"mode": "quota", "quota_per_s": max(1.0, base / 2)}},
        ),
        Phase(
            "gray-failure",
            unit,
            base,
            "payment hangs on a share of calls while its /health says ok",
            faults={"payment": {"mode": "gray", "timeout_rate": 0.3}},
        ),
        Phase(
            "payment-outage",
            unit * 1.5,
            base,
            "the payment provider is down: purchases park, then resume",
            faults={"payment": {"mode": "outage"}},
        ),
        Phase(
            "worker-crash",
            unit,
            base,
            "one worker is SIGKILLed and restarted: its runs are taken over",
            kill_worker=True,
            restart_after=unit / 3,
        ),
        Phase(
            "duplicates",
            unit,
            base,
            "customers submit their purchase again with the same key",
            duplicate_share=0.5,
            double_click_share=0.3,
        ),
    )


def quick_plan() -> SalePlan:
    """About 50 seconds of load and at most 40 of draining: the run CI makes."""
    return SalePlan("quick", _phases(base=3.0, unit=6.0), drain_seconds=90.0)


def full_plan() -> SalePlan:
    """About five minutes of load and at most two of draining."""
    return SalePlan("full", _phases(base=4.0, unit=40.0), drain_seconds=120.0)
