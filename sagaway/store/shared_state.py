"""The store's contract for resilience state shared by every worker process: circuit
breakers' published states and rate limiters' token buckets."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["SharedStateStore"]

V = TypeVar("V")


class SharedStateStore(ABC):
    """Breaker states and token buckets shared by every worker process of a store
    (`app.shared_breakers`, `app.shared_rate_limits`)."""

    @abstractmethod
    def read_shared(self, kind: str, name: str) -> tuple[Any, ...] | None:
        """The stored row of a shared breaker (`kind` "breaker": state, until, version) or
        token bucket (`kind` "limiter": tokens, stamp), or None."""

    @abstractmethod
    def publish_breaker(
        self, name: str, state: str, until: float, expected_version: int
    ) -> tuple[str, float, int]:
        """Compare-and-set a breaker's shared state; return what is stored afterwards."""

    @abstractmethod
    def update_bucket(
        self,
        name: str,
        change: Callable[[tuple[float, float] | None], tuple[tuple[float, float], V]],
    ) -> V:
        """Atomically read a token bucket's (tokens, stamp) — None if never used — call
        `change(level) -> (new_level, value)`, store `new_level`, and return `value`."""


# One minute of one metric series: (name, labels, minute, count, total, low, high).
MetricBucket = tuple[str, str, int, int, float, float, float]
