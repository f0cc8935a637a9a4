"""Errors raised by the resilience primitives: one small hierarchy callers can catch,
under `sagaway.errors.SagawayError` (they are defined in `sagaway.errors` with every other
error, and named here too).

`Rejected` means the protected function was *not* called; its `retry_after` (seconds, or
None when unknown) says when trying again may succeed, so a caller can wait or park
instead of failing.
"""

from sagaway.errors import (
    BreakerOpen,
    BulkheadFull,
    LimitExceeded,
    RateLimited,
    Rejected,
    ResilienceError,
    TimeoutExceeded,
)

__all__ = [
    "BreakerOpen",
    "BulkheadFull",
    "LimitExceeded",
    "RateLimited",
    "Rejected",
    "ResilienceError",
    "TimeoutExceeded",
]
