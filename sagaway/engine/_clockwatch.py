"""Noticing that the store's clock stepped, and what a worker does then.

Leases and timers are times by the store's clock (`store.clock`). When that clock steps —
the host's clock for SQLite, the server's for PostgreSQL — every lease seems to end sooner
(forward) or later (backward) than it does. The scheduler compares each reading it claims
with against the monotonic clock, which no step moves:

- forward: every lease looks expired, its owner alive or not. The worker renews its own
  leases at once and, for one lease, takes over no leased run (it claims runs that have no
  owner only): by then every live owner has renewed its leases by the new clock.
- backward: runs (and messages) that were due "now" by the old clock are due in the new
  clock's future; for one lease they are made due now (`hurry_unowned`) at every look for
  due runs (writes stamped by the old clock may still be on their way), and the worker
  renews its leases. Timers keep their time: a timer set before the step fires when the
  clock reaches it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["STEP", "ClockWatch"]

log = logging.getLogger("sagaway")

# The clock moving this much more or less than the monotonic clock between two readings is
# a step (NTP slews at most half a millisecond per second).
STEP = 1.0
# A reading that took longer than this (the thread was descheduled) says nothing of steps.
PAUSED = 0.5


class ClockWatch:
    """Checks readings of the store's clock for steps; one per worker."""

    def __init__(
        self, lease: float, hurry: Callable[[float], int], renew: Callable[[], None]
    ) -> None:
        self.lease = lease
        self._hurry, self._renew = hurry, renew
        self._offset: float | None = None
        self._no_takeover_until = 0.0
        # After a backward step, runs and messages are made due again until then: a write
        # stamped by the old clock may still be on its way when the step is seen.
        self._hurry_until = 0.0
        self.steps = 0

    def check(self, now: float, before: float) -> bool:
        """Look at a reading `now` of the store's clock, taken after the monotonic reading
        `before`; return whether leased runs may be taken over (not for one lease after a
        forward step, nor when the thread paused around the reading, which then tells a
        step from a pause no better than it does the time)."""
        mono = time.monotonic()
        if mono - before > PAUSED:
            return False  # the offset is kept: a real step is seen at the next reading
        offset = now - mono
        step = 0.0 if self._offset is None else offset - self._offset
        self._offset = offset
        if abs(step) > STEP:
            self.steps += 1
            self._renew()
            if step > 0:
                self._no_takeover_until = mono + self.lease
                log.warning(
                    "sagaway: the clock stepped forward by %.1f s: leases renewed now, no run "
                    "taken over from another worker for %g s",
                    step,
                    self.lease,
                )
            else:
                self._hurry_until = mono + self.lease
                log.warning(
                    "sagaway: the clock stepped back by %.1f s: leases renewed now, runs due "
                    "by the old clock made due now",
                    -step,
                )
        if mono < self._hurry_until:  # raises while the store is unavailable: tried again
            self._hurry(now)
        return mono >= self._no_takeover_until
