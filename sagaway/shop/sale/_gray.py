"""The gray-failure alarm of the sale: `sagaway.observe.alarms.GrayFailureSource` on the
checkout's `charge_card` tries against the payment provider's `/health`, evaluated live at
every whole minute while the sale runs (the source can only ask the probe how things are now,
so it cannot be replayed afterwards)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GRAY_ALARM", "GrayState", "GrayWatch"]

GRAY_ALARM: dict[str, Any] = {
    "name": "payment-gray",
    "saga": "checkout",
    "step": "charge_card",
    "error_rate": 0.2,
    "latency": 2.0,
    "min_calls": 5,
    "period": 60,
}
FLUSH_SLACK = 3.0  # seconds after a minute's end before reading it: workers flush every 2 s


@dataclass(frozen=True)
class GrayState:
    """The alarm's state for the minute ending at `at` (seconds since the epoch), and why."""

    at: float
    state: str
    reason: str


@dataclass
class GrayWatch:
    """Evaluates the gray-failure source at each minute's end until stopped."""

    db_url: str
    payment_url: str
    states: list[GrayState] = field(default_factory=list)
    error: str | None = None

    def _evaluate(self, source: Any, at: float) -> GrayState:
        return GrayState(at, source.state_at(at).value, source.explain(at))

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate at every minute boundary (a few seconds after it) until `stop` is set."""
        from sagaway import App
        from sagaway.observe.alarms import EngineMetricReader, GrayFailureSource, Probe

        app = App(self.db_url)
        try:
            config = {k: v for k, v in GRAY_ALARM.items() if k != "name"}
            source = GrayFailureSource(
                GRAY_ALARM["name"], probe=Probe(f"{self.payment_url}/health"), **config
            )
            source.bind(EngineMetricReader(app.store))
            while not stop.is_set():
                boundary = math.floor(time.time() / 60 + 1) * 60
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), boundary + FLUSH_SLACK - time.time())
                if stop.is_set():
                    break
                self.states.append(await asyncio.to_thread(self._evaluate, source, boundary))
        except Exception as exc:  # reported beside the alarm, never fatal to the sale
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            app.close()

    def changes(self) -> list[GrayState]:
        """The evaluations whose state differs from the one before (the first one always)."""
        out: list[GrayState] = []
        for s in self.states:
            if not out or s.state != out[-1].state:
                out.append(s)
        return out
