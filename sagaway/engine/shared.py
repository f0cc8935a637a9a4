"""Resilience state shared by every worker process, kept in the App's store.

`CircuitBreaker(..., shared=app.shared_breakers)` publishes its transitions to the store and
follows those of the same-named breaker in other processes; `RateLimiter(...,
state=app.shared_rate_limits)` takes its tokens from a bucket in the store, so a provider's
quota holds across all workers. Each token taken is one committed write (with
`synchronous=FULL`, one fsync): share a limiter for a quota that matters, not for every call.
"""

from __future__ import annotations

from collections.abc import Callable

from sagaway.resilience.shared import BucketLevel, SharedBreakerState, take_tokens
from sagaway.store.base import SharedStateStore

# The App's store, opened on first use (declaring a breaker at import time touches nothing).
StoreGetter = Callable[[], SharedStateStore]

__all__ = ["StoreBreakerStates", "StoreRateLimits"]


class StoreBreakerStates:
    """A `BreakerStateStore` in the App's store (table `sagaway_breakers`)."""

    def __init__(self, store: StoreGetter) -> None:
        self._store = store

    def read(self, name: str) -> SharedBreakerState | None:
        """The latest published state of breaker `name`, or None."""
        row = self._store().read_shared("breaker", name)
        return None if row is None else SharedBreakerState(row[0], float(row[1]), int(row[2]))

    def publish(
        self, name: str, state: str, until: float, expected_version: int
    ) -> SharedBreakerState:
        """Compare-and-set; returns what is stored afterwards (a newer publication wins)."""
        return SharedBreakerState(
            *self._store().publish_breaker(name, state, until, expected_version)
        )


class StoreRateLimits:
    """A `RateLimiterState` in the App's store (table `sagaway_limiters`)."""

    def __init__(self, store: StoreGetter) -> None:
        self._store = store

    def take(
        self,
        bucket: str,
        *,
        rate: float,
        per: float,
        burst: float,
        tokens: float,
        now: float,
        max_wait: float = 0.0,
    ) -> float:
        """Atomically take tokens from the stored bucket; the wait, as `take_tokens` says."""

        def change(level: tuple[float, float] | None) -> tuple[tuple[float, float], float]:
            new, wait = take_tokens(
                None if level is None else BucketLevel(*level),
                rate=rate,
                per=per,
                burst=burst,
                tokens=tokens,
                now=now,
                max_wait=max_wait,
            )
            return (new.tokens, new.stamp), wait

        return self._store().update_bucket(bucket, change)

    def level(self, bucket: str) -> BucketLevel | None:
        """The stored level of `bucket`, or None if never used."""
        row = self._store().read_shared("limiter", bucket)
        return None if row is None else BucketLevel(float(row[0]), float(row[1]))
