"""What a circuit breaker reports: its state, its transitions, a snapshot of its counts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerMetrics", "BreakerState", "BreakerTransition"]


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
