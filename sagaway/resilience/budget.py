"""Retry budget: retries may add at most a fixed fraction to the load a dependency sees.

Per-call attempt limits do not stop a fleet from multiplying its load during an outage:
with 3 attempts each, every caller sends three times as many requests exactly when the
dependency can least afford it. A budget caps retries across all calls sharing it: each
success deposits `ratio` of a token, each retry withdraws one, and `min_per_second`
tokens accrue with time so that a caller with little traffic can still retry. While the
dependency is down (no successes), retries fall to `min_per_second` after the stored
tokens are spent.
"""

from __future__ import annotations

import threading
import time

from sagaway.resilience.clock import Clock

__all__ = ["RetryBudget"]


class RetryBudget:
    """A token bucket for retries, shared by every call of the policies that hold it.

    Starts full with `capacity` tokens; each `deposit()` (a success) adds `ratio`, time
    adds `min_per_second` per second, never beyond `capacity`; each `withdraw()` (a
    retry) takes one token, or returns False when less than one is left. Thread-safe.
    In steady state, retries stay below `ratio` x successes + `min_per_second` x seconds.
    """

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 1.0,
        capacity: float = 20.0,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 0 <= ratio <= 1:
            raise ValueError(
                f"RetryBudget(ratio={ratio}): a fraction in [0, 1] of a retry earned per "
                "success (0.2: retries may add 20% to the load)"
            )
        if min_per_second < 0:
            raise ValueError(f"RetryBudget(min_per_second={min_per_second}): must be >= 0")
        if capacity < 1:
            raise ValueError(
                f"RetryBudget(capacity={capacity}): must be >= 1, or no retry could ever be paid"
            )
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.capacity = float(capacity)
        self._clock = clock
        self._tokens = float(capacity)
        self._stamp = clock()
        self._lock = threading.Lock()
        self.withdrawn = 0  # retries paid for so far
        self.refused = 0  # retries refused so far

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio:g}, min_per_second={self.min_per_second:g}, "
            f"capacity={self.capacity:g}, balance={self.balance:.2f})"
        )

    def _accrue(self) -> None:
        now = self._clock()
        if now > self._stamp:
            self._tokens = min(
                self.capacity, self._tokens + (now - self._stamp) * self.min_per_second
            )
            self._stamp = now

    @property
    def balance(self) -> float:
        """Tokens available now (a retry costs one)."""
        with self._lock:
            self._accrue()
            return self._tokens

    def deposit(self, successes: int = 1) -> None:
        """Credit `successes` successful calls: `ratio` of a token each."""
        if not self.ratio:
            return
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + self.ratio * successes)

    def withdraw(self) -> bool:
        """Pay for one retry: True (and one token spent) if the budget allows it."""
        with self._lock:
            self._accrue()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.withdrawn += 1
                return True
            self.refused += 1
            return False
