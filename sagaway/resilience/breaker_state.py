"""What a circuit breaker hands out and reports: permits, states, transitions, snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sagaway.resilience.window import SLOW

if TYPE_CHECKING:
    from sagaway.resilience.breaker import CircuitBreaker

__all__ = ["BreakerMetrics", "BreakerPermit", "BreakerState", "BreakerTransition"]


class BreakerState(StrEnum):
    """A circuit breaker's state; compares equal to its string value ("closed", ...)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


@dataclass(frozen=True)
class BreakerTransition:
    """One state change of breaker `breaker`, at wall-clock time `at`, and why."""

    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    at: float
    reason: str


@dataclass(frozen=True)
class BreakerMetrics:
    """A snapshot: the state, the closed-state window's counts and rates (None below
    `min_calls`), and how many calls were refused since the breaker was created."""

    state: BreakerState
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float | None
    slow_call_rate: float | None
    not_permitted: int


class BreakerPermit:
    """Permission for one call, from `CircuitBreaker.acquire()`: report its outcome once.

    `record_success` / `record_failure` take the call's duration in seconds (measured from
    `acquire()` when omitted); `record_failure` classifies the error with the breaker's
    `record` and `ignore` filters. `release()` reports nothing (an abandoned call) and
    frees a half-open trial slot. As a context manager the permit reports the block's
    outcome. Reporting twice raises RuntimeError. A permit never reported holds its
    half-open trial slot until `half_open_timeout`.
    """

    __slots__ = ("_breaker", "_done", "_generation", "_start")

    def __init__(self, breaker: CircuitBreaker, generation: int, start: float) -> None:
        self._breaker = breaker
        self._generation = generation
        self._start = start
        self._done = False

    def _finish(self) -> float:
        if self._done:
            raise RuntimeError(
                f"this permit of circuit breaker {self._breaker.name!r} was already reported; "
                "acquire() a new permit for each call"
            )
        self._done = True
        return self._breaker._clock()

    def record_success(self, duration: float | None = None) -> None:
        """Report that the call succeeded (it still counts as slow if `duration` is)."""
        now = self._finish()
        breaker = self._breaker
        elapsed = now - self._start if duration is None else duration
        breaker._record(self._generation, SLOW if elapsed >= breaker.slow_call_duration else 0, now)

    def record_failure(self, error: BaseException, duration: float | None = None) -> None:
        """Report that the call raised `error` (counted as the breaker's filters say)."""
        now = self._finish()
        elapsed = now - self._start if duration is None else duration
        self._breaker._record(self._generation, self._breaker._classify(error, elapsed), now)

    def release(self) -> None:
        """Report no outcome: the call is not counted and a half-open trial slot is freed."""
        now = self._finish()
        self._breaker._record(self._generation, None, now)

    def __enter__(self) -> BreakerPermit:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._done:
            return
        if exc is None:
            self.record_success()
        else:
            self.record_failure(exc)
