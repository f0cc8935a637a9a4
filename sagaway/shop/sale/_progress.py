"""The live display while a sale runs: the phase, requests per second, p99 latency, 503s shed
and orders taken, redrawn four times a second (a line every few seconds when the output is not
a terminal)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from sagaway.observe.metrics._series import percentile

if TYPE_CHECKING:
    from sagaway.shop.sale._run import SaleRun

__all__ = ["Progress", "live_figures"]

RATE_WINDOW = 2.0  # seconds over which the display counts requests per second
LATENCY_WINDOW = 5.0  # seconds over which it takes the p99
PLAIN_EVERY = 5.0  # seconds between lines when the output is not a terminal


def live_figures(run: SaleRun) -> dict[str, Any]:
    """The figures the display shows, from the customers' recent responses."""
    rec = run.recorder
    latencies = [s.latency for s in rec.window(LATENCY_WINDOW) if s.status]
    shop = run.shop_samples[-1][1] if run.shop_samples else {}
    return {
        "phase": rec.phase,
        "elapsed": rec.now(),
        "rps": len(rec.window(RATE_WINDOW)) / RATE_WINDOW,
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "shed": sum(1 for s in rec.samples if s.status == 503),
        "orders": sum(len(o) for o in rec.orders_by_checkout.values()),
        "walking": rec.arrivals - rec.completed - rec.gave_up - rec.turned_away - rec.out_of_stock,
        "limit": shop.get("limit"),
        "in_flight": shop.get("in_flight"),
    }


class Progress:
    """A context manager drawing `live_figures` until it exits."""

    def __init__(self, run: SaleRun, console: Console | None) -> None:
        self.run = run
        self.console = console or Console()
        self.message = ""
        self._live: Live | None = None
        self._printed = 0.0

    def note(self, message: str) -> None:
        """Show `message` beside the figures."""
        self.message = message
        self.refresh()

    def _table(self) -> Table:
        f = live_figures(self.run)
        total = self.run.options.plan.load_seconds
        table = Table(title=f"sale ({self.run.options.plan.name}) {self.message}".rstrip())
        for column in ("phase", "time", "req/s", "p99", "503s", "orders", "walking", "limit"):
            table.add_column(column, justify="left" if column == "phase" else "right")
        table.add_row(
            f["phase"],
            f"{f['elapsed']:.0f}/{total:.0f} s",
            f"{f['rps']:.0f}",
            "-" if f["p99_ms"] is None else f"{f['p99_ms']:.0f} ms",
            f"{f['shed']:,}",
            f"{f['orders']:,}",
            f"{f['walking']:,}",
            "-" if f["limit"] is None else f"{f['in_flight']}/{f['limit']}",
        )
        return table

    def refresh(self) -> None:
        """Redraw now (or print a line, when the output is not a terminal)."""
        if self._live is not None:
            self._live.update(self._table())
        elif time.monotonic() - self._printed >= PLAIN_EVERY:
            self._printed = time.monotonic()
            f = live_figures(self.run)
            p99 = "-" if f["p99_ms"] is None else f"{f['p99_ms']:.0f} ms"
            self.console.print(
                f"[{f['elapsed']:5.0f} s] {f['phase']:<15} {f['rps']:5.0f} req/s  p99 {p99:>8}  "
                f"503s {f['shed']:,}  orders {f['orders']:,}  {self.message}".rstrip(),
                highlight=False,
            )

    async def ticking(self, stop: asyncio.Event) -> None:
        """Refresh until `stop` is set (the live display also redraws itself)."""
        while not stop.is_set():
            self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self._live = Live(
                console=self.console, refresh_per_second=4, get_renderable=self._table
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None
