"""Leases: a worker owns a run only for a while. The claim grants a lease and moves the
run's `due_at` to its end; the worker's heartbeat renews the leases of the runs it executes;
a run whose lease expires is due again and any worker claims it, adding one to its `epoch`
(the fencing token every write of the old owner is then refused with)."""

from __future__ import annotations

import time

__all__ = ["Lease"]


class Lease:
    """A run's lease as its execution knows it was granted (by the claim, or by a
    checkpoint that renewed it). The heartbeat renews it too, but no effect starts on the
    heartbeat's word: before each one the execution asks `ending()`."""

    def __init__(self, until: float, length: float) -> None:
        self.until, self.length = until, length

    def ending(self) -> bool:
        """True unless the lease surely holds a third of a lease longer: then another
        worker cannot have taken the run over (its clock would have to be that far ahead)."""
        return time.time() > self.until - self.length / 3

    def renewal(self, now: float) -> float:
        """The end of a lease renewed at `now`."""
        return now + self.length
