"""Sliding windows of call outcomes for the circuit breaker: count based or time based.

Both keep running totals, so recording an outcome and asking "has a threshold been
reached?" costs O(1), whatever the window's size:

- `CountWindow(size)`: the last `size` calls, in a ring buffer of outcome codes.
- `TimeWindow(seconds)`: the calls of the last `seconds` whole seconds, in a ring of
  one-second buckets. A call at clock time `t` falls in second `floor(t)`; at time `now`
  the window holds the seconds `floor(now) - seconds + 1 ... floor(now)`.

These rings are deliberately not `sagaway.observe.metrics.Series`: a breaker needs a
bounded structure whose update is a handful of integer operations on the call path,
while `Series` keeps every period for later range queries.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAILED", "SLOW", "CountWindow", "OutcomeWindow", "TimeWindow", "WindowCounts"]

FAILED = 1
"""Outcome code bit: the call failed."""
SLOW = 2
"""Outcome code bit: the call took at least the slow-call duration."""


@dataclass(frozen=True)
class WindowCounts:
    """What a window holds now: calls, failed calls and slow calls (a call can be both)."""

    calls: int
    failures: int
    slow: int


@dataclass(frozen=True)
class CountWindow:
    """A window over the last `size` recorded calls (Resilience4j's COUNT_BASED)."""

    size: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"CountWindow(size={self.size!r}): size must be an int >= 1 calls")

    def build(self, min_calls: int, failure_rate: float, slow_call_rate: float) -> OutcomeWindow:
        """A fresh, empty window with these thresholds."""
        return _CountRing(self.size, min_calls, failure_rate, slow_call_rate)


@dataclass(frozen=True)
class TimeWindow:
    """A window over the calls of the last `seconds` whole seconds (Resilience4j's TIME_BASED)."""

    seconds: int = 60

    def __post_init__(self) -> None:
        if not isinstance(self.seconds, int) or self.seconds < 1:
            raise ValueError(
                f"TimeWindow(seconds={self.seconds!r}): seconds must be an int >= 1 "
                "(the window is kept in one-second buckets)"
            )

    def build(self, min_calls: int, failure_rate: float, slow_call_rate: float) -> OutcomeWindow:
        """A fresh, empty window with these thresholds."""
        return _SecondBuckets(self.seconds, min_calls, failure_rate, slow_call_rate)


class OutcomeWindow:
    """Running counts of recent outcomes, and whether they reach the opening thresholds.

    Not thread-safe by itself: the breaker serialises access under its lock.
    """

    __slots__ = ("calls", "failure_rate", "failures", "min_calls", "slow", "slow_call_rate")

    def __init__(self, min_calls: int, failure_rate: float, slow_call_rate: float) -> None:
        self.min_calls = min_calls
        self.failure_rate = failure_rate
        self.slow_call_rate = slow_call_rate
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, code: int, now: float) -> bool:
        """Add one outcome (a combination of FAILED and SLOW bits) observed at `now`.

        Returns True when, with it, at least `min_calls` calls are in the window and the
        failure rate or the slow-call rate reaches its threshold. Once it returned True,
        `clear()` the window before recording more (the breaker opens, and clears the
        window when it closes again): windows rely on it to answer "still below" without
        dividing when a success, or an outcome replacing an equal one, cannot have
        raised a rate.
        """
        raise NotImplementedError

    def counts(self, now: float) -> WindowCounts:
        """The counts as of `now` (a time window first lets expired seconds go)."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget every outcome."""
        raise NotImplementedError

    def _exceeded(self) -> bool:
        calls = self.calls
        return calls >= self.min_calls and (
            self.failures / calls >= self.failure_rate or self.slow / calls >= self.slow_call_rate
        )


class _CountRing(OutcomeWindow):
    __slots__ = ("_pos", "_ring", "size")

    def __init__(
        self, size: int, min_calls: int, failure_rate: float, slow_call_rate: float
    ) -> None:
        super().__init__(min_calls, failure_rate, slow_call_rate)
        self.size = size
        self._ring = bytearray(size)
        self._pos = 0

    def record(self, code: int, now: float) -> bool:
        ring = self._ring
        pos = self._pos
        if self.calls == self.size:
            old = ring[pos]
            if old != code:
                ring[pos] = code
                if old & FAILED:
                    self.failures -= 1
                if old & SLOW:
                    self.slow -= 1
                if code & FAILED:
                    self.failures += 1
                if code & SLOW:
                    self.slow += 1
            elif pos + 1 < self.size:
                # Same outcome in as out: the counts are unchanged, so still below.
                self._pos = pos + 1
                return False
        else:
            self.calls += 1
            ring[pos] = code
            if code & FAILED:
                self.failures += 1
            if code & SLOW:
                self.slow += 1
        pos += 1
        self._pos = 0 if pos == self.size else pos
        calls = self.calls
        if not code and calls > self.min_calls:
            return False  # a success only lowers rates that were already below
        return calls >= self.min_calls and (
            self.failures / calls >= self.failure_rate or self.slow / calls >= self.slow_call_rate
        )

    def counts(self, now: float) -> WindowCounts:
        return WindowCounts(self.calls, self.failures, self.slow)

    def clear(self) -> None:
        self._ring = bytearray(self.size)
        self._pos = 0
        self.calls = self.failures = self.slow = 0


class _SecondBuckets(OutcomeWindow):
    __slots__ = ("_calls", "_failures", "_head", "_settled", "_slow", "seconds")

    def __init__(
        self, seconds: int, min_calls: int, failure_rate: float, slow_call_rate: float
    ) -> None:
        super().__init__(min_calls, failure_rate, slow_call_rate)
        self.seconds = seconds
        self._calls = [0] * seconds
        self._failures = [0] * seconds
        self._slow = [0] * seconds
        self._head: int | None = None  # the newest second the buckets describe
        # True while only record() changed the counts since a check found them below the
        # thresholds; expiring seconds (which may drop successes) make it False.
        self._settled = True

    def _advance(self, second: int) -> None:
        head = self._head
        if head is not None and second <= head:
            return  # a clock that did not move (or moved back) keeps the newest bucket
        n = self.seconds
        first = second - n + 1 if head is None else max(head + 1, second - n + 1)
        calls, failures, slow = self._calls, self._failures, self._slow
        for s in range(first, second + 1):
            i = s % n
            if calls[i]:
                self.calls -= calls[i]
                self.failures -= failures[i]
                self.slow -= slow[i]
                calls[i] = failures[i] = slow[i] = 0
                self._settled = False
        self._head = second

    def record(self, code: int, now: float) -> bool:
        second = int(now // 1)
        if second != self._head:
            self._advance(second)
        i = self._head % self.seconds  # type: ignore[operator]  # _advance has set _head
        self._calls[i] += 1
        self.calls += 1
        if code:
            if code & FAILED:
                self._failures[i] += 1
                self.failures += 1
            if code & SLOW:
                self._slow[i] += 1
                self.slow += 1
        elif self._settled and self.calls > self.min_calls:
            return False  # a success only lowers rates that were already below
        self._settled = True
        return self._exceeded()

    def counts(self, now: float) -> WindowCounts:
        self._advance(int(now // 1))
        return WindowCounts(self.calls, self.failures, self.slow)

    def clear(self) -> None:
        n = self.seconds
        self._calls, self._failures, self._slow = [0] * n, [0] * n, [0] * n
        self._head = None
        self._settled = True
        self.calls = self.failures = self.slow = 0
