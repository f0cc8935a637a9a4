"""The clock of a PostgreSQL store: the server's, carried forward on the monotonic clock.

Workers on many hosts compare leases and timers with each other's; with each host's wall
clock, one host whose clock stepped an hour ahead would take over every run at once. So the
store reads the server's clock (`clock_timestamp()`) when it opens and every `RESYNC`
seconds, keeps the offset from this process's monotonic clock, and `now()` is that offset
plus `time.monotonic()`: as cheap as `time.time()`, blind to steps of this host's clock,
and still right while the server is unreachable (the offset just is not refreshed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RESYNC", "ServerClock"]

log = logging.getLogger("sagaway")

RESYNC = 30.0
# A difference from the carried-forward clock larger than this is the server's clock
# stepping (drift between two reads is micro-seconds).
STEP = 1.0
_QUERY = "SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8"


class ServerClock:
    """`now()` by the server's clock; `sync` reads it through `execute(sql)`."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._offset = time.time() - time.monotonic()  # until the first sync
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        """Seconds since the epoch by the server's clock."""
        return self._offset + time.monotonic()

    def sync(self, execute: Callable[[str], Any], first: bool = False) -> None:
        """Read the server's clock (three times, keeping the read with the shortest round
        trip, whose middle is then within half of it of the server's reading)."""
        best: tuple[float, float] | None = None
        for _ in range(3):
            sent = time.monotonic()
            server = float(execute(_QUERY))
            back = time.monotonic()
            if best is None or back - sent < best[0]:
                best = (back - sent, server - (sent + back) / 2)
        assert best is not None
        offset = best[1]
        if not first and abs(offset - self._offset) > STEP:
            log.warning(
                "sagaway: the clock of %s stepped by %+.1f s", self.where, offset - self._offset
            )
        self._offset = offset

    def keep_in_sync(self, execute: Callable[[str], Any]) -> None:
        """Re-read the server's clock every RESYNC seconds in a thread, until `stop()`."""

        def loop() -> None:
            while not self._stop.wait(RESYNC):
                try:
                    self.sync(execute)
                except Exception:  # unreachable now: carry on with the offset we have
                    log.debug("sagaway: reading the clock of %s failed", self.where, exc_info=True)

        self._thread = threading.Thread(target=loop, name="sagaway-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop re-reading the server's clock."""
        self._stop.set()
