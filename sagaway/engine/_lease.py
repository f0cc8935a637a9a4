"""Leases: a worker owns a run only for a while. The claim grants a lease and moves the
run's `due_at` to its end; the worker's heartbeat renews the leases of the runs it executes;
a run whose lease expires is due again and any worker claims it, adding one to its `epoch`
(the fencing token every write of the old owner is then refused with).

`due_at` is in the store's clock, which all workers share; how long the lease still holds
is, for its owner, measured on the monotonic clock: a step of the wall clock neither makes
the owner believe its lease holds longer nor ends it early."""

from __future__ import annotations

import time

__all__ = ["Lease"]


class Lease:
    """A run's lease as its execution knows it was granted (by the claim, or by a
    checkpoint that renewed it). The heartbeat renews it too, but no effect starts on the
    heartbeat's word: before each one the execution asks `ending()`."""

    def __init__(self, until: float, length: float, now: float) -> None:
        """A lease ending at `until` by the store's clock, which reads `now`; a lease that
        seems to hold longer than `length` (the clock stepped back) counts as `length`."""
        self.length = length
        self._until = time.monotonic() + min(length, max(0.0, until - now))

    def ending(self) -> bool:
        """True unless the lease surely holds a third of a lease longer: then another
        worker cannot have taken the run over."""
        return time.monotonic() > self._until - self.length / 3

    def renewal(self, now: float) -> float:
        """The end, by the store's clock, of a lease renewed at `now`."""
        return now + self.length

    def renewed(self, sent: float) -> None:
        """A write that renewed the lease, sent at monotonic time `sent`, committed."""
        self._until = sent + self.length
