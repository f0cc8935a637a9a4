"""Clocks: every primitive takes a `clock` callable, so tests can drive time by hand."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Clock", "ManualClock"]

Clock = Callable[[], float]
"""A zero-argument callable returning seconds as a float (`time.monotonic`, `time.time`)."""


class ManualClock:
    """A clock that moves only when told to: `clock()` reads it, `advance(s)` moves it on.

    Thread-safe. Pass the same instance as `clock` (and `wall_clock` where a primitive
    takes one) to make windows, open periods and token refill deterministic in tests.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance({seconds}): time only moves forward")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Set the clock to `now`, which must not be earlier than the current time."""
        with self._lock:
            if now < self._now:
                raise ValueError(f"ManualClock.set({now}): earlier than the current {self._now}")
            self._now = float(now)

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
