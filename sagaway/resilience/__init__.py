"""Resilience primitives: retry (+ budget), timeout, circuit breaker, bulkhead, rate limiter,
adaptive concurrency limit.

Each works alone, sync or async and thread-safe, as a decorator, through
`.call(fn, *args, **kwargs)`, or (where it makes sense) as a context manager.
See docs/resilience.md for the state machines, defaults and integration hooks.
"""

from sagaway.resilience.adaptive import AdaptiveLimit, LimitPermit
from sagaway.resilience.breaker import (
    BreakerMetrics,
    BreakerPermit,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
)
from sagaway.resilience.budget import RetryBudget
from sagaway.resilience.bulkhead import Bulkhead
from sagaway.resilience.clock import ManualClock
from sagaway.resilience.errors import (
    BreakerOpen,
    BulkheadFull,
    LimitExceeded,
    RateLimited,
    Rejected,
    ResilienceError,
    TimeoutExceeded,
)
from sagaway.resilience.ratelimit import RateLimiter
from sagaway.resilience.retry import Jitter, Permanent, Retry
from sagaway.resilience.shared import (
    BreakerStateStore,
    BucketLevel,
    InMemoryBreakerStateStore,
    InMemoryRateLimiterState,
    RateLimiterState,
    SharedBreakerState,
    take_tokens,
)
from sagaway.resilience.timeout import Timeout
from sagaway.resilience.window import CountWindow, TimeWindow, WindowCounts

__all__ = [
    "AdaptiveLimit",
    "BreakerMetrics",
    "BreakerOpen",
    "BreakerPermit",
    "BreakerState",
    "BreakerStateStore",
    "BreakerTransition",
    "BucketLevel",
    "Bulkhead",
    "BulkheadFull",
    "CircuitBreaker",
    "CountWindow",
    "InMemoryBreakerStateStore",
    "InMemoryRateLimiterState",
    "Jitter",
    "LimitExceeded",
    "LimitPermit",
    "ManualClock",
    "Permanent",
    "RateLimited",
    "RateLimiter",
    "RateLimiterState",
    "Rejected",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "SharedBreakerState",
    "TimeWindow",
    "Timeout",
    "TimeoutExceeded",
    "WindowCounts",
    "take_tokens",
]
