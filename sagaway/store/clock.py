"""The store's clock: the one clock every worker of a store reads.

Leases, timers and due times are compared across processes, so they must come from one
clock. A SQLite file is shared only by the processes of one host: its clock is the host's
wall clock (`sagaway._clock.wall`). A PostgreSQL store is shared by many hosts: its clock
is the server's, read at opening and every `CLOCK_RESYNC` seconds, and carried forward in
between on this process's monotonic clock, so that the wall clocks of worker hosts play no
part at all (see docs/reliability.md, "Clock jumps").

A step of the store's clock itself (the host's, or the server's) is seen by every worker;
each handles it (`engine.worker`): after a forward step it renews its leases at once and
takes over no leased run for one lease; after a backward step it makes the runs that were
due "now" (`hurry_unowned`) due again at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from sagaway import _clock

__all__ = ["StoreClock"]


class StoreClock(ABC):
    """The clock of a store, shared by every process using it."""

    def now(self) -> float:
        """Seconds since the epoch by the store's clock (here: this host's wall clock)."""
        return _clock.wall()

    @abstractmethod
    def hurry_unowned(self, now: float) -> int:
        """Make the runs that wait for no time of their own, but only for a worker (pending,
        handed back, signalled, cancelled), and the deliveries of messages published without
        a delay, due at `now` if they are due later; return how many. After the clock
        stepped back, their due times lie in its future."""
