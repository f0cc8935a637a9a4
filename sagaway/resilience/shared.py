"""State that several processes can share: protocols, the shared arithmetic, in-memory versions.

A circuit breaker or a rate limiter keeps its state in process by default. To make a
provider's quota, or an open breaker, hold across every worker process, give it an object
implementing `RateLimiterState` or `BreakerStateStore` backed by something all processes
reach (the Store). The in-memory implementations here are complete and thread-safe: use
them to share between instances in one process, and in tests.
"""

from __future__ import annotations

import threading
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "BreakerStateStore",
    "BucketLevel",
    "InMemoryBreakerStateStore",
    "InMemoryRateLimiterState",
    "RateLimiterState",
    "SharedBreakerState",
    "take_tokens",
]

# Tolerance for floating-point refill: a caller that waited exactly the announced time
# must find its tokens due.
_EPSILON = 1e-9


class BucketLevel(NamedTuple):
    """A token bucket as stored: `tokens` (negative when reserved ahead) as of `stamp`."""

    tokens: float
    stamp: float


def take_tokens(
    level: BucketLevel | None,
    *,
    rate: float,
    per: float,
    burst: float,
    tokens: float,
    now: float,
    max_wait: float = 0.0,
) -> tuple[BucketLevel, float]:
    """One atomic token-bucket step, as pure arithmetic: `(new_level, wait)`.

    The bucket refills at `rate` tokens per `per` seconds up to `burst`; a bucket never
    seen (`level` None) starts full. If `tokens` are available now they are taken and
    `wait` is 0.0. Otherwise `wait` is the seconds until they will be due; they are taken
    ahead (reserved, the level going negative) only when `wait <= max_wait`, in which case
    the caller must wait that long before acting. So the tokens were taken exactly when
    `wait <= max_wait`. A clock behind the stored `stamp` refills nothing (clock skew
    between processes never mints tokens).

    A Store-backed `RateLimiterState` should read the level under a row lock, call this,
    and write the new level back in the same transaction.
    """
    if level is None:
        available, stamp = float(burst), now
    else:
        available, stamp = level.tokens, level.stamp
        if now > stamp:
            available += (now - stamp) * rate / per
            if available > burst:
                available = float(burst)
            stamp = now
    short = tokens - available
    if short <= _EPSILON:
        return BucketLevel(available - tokens, stamp), 0.0
    wait = short * per / rate
    if wait <= max_wait:
        return BucketLevel(available - tokens, stamp), wait
    return BucketLevel(available, stamp), wait


@runtime_checkable
class RateLimiterState(Protocol):
    """Where token buckets live; several `RateLimiter`s naming the same bucket share it."""

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
        """Atomically apply `take_tokens` to `bucket` and return its `wait`.

        The tokens were taken exactly when the returned wait is `<= max_wait`.
        """
        ...


class InMemoryRateLimiterState:
    """Token buckets in a dict, one lock for all: shares a quota between threads and limiters."""

    def __init__(self) -> None:
        self._levels: dict[str, BucketLevel] = {}
        self._lock = threading.Lock()

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
        """See `RateLimiterState.take`."""
        lock = self._lock
        lock.acquire()
        try:
            level, wait = take_tokens(
                self._levels.get(bucket),
                rate=rate,
                per=per,
                burst=burst,
                tokens=tokens,
                now=now,
                max_wait=max_wait,
            )
            self._levels[bucket] = level
        finally:
            lock.release()
        return wait

    def level(self, bucket: str) -> BucketLevel | None:
        """The stored level of `bucket` (None if never used), as of its last take."""
        with self._lock:
            return self._levels.get(bucket)


class SharedBreakerState(NamedTuple):
    """A breaker's state as published for all processes.

    `state` is "closed", "open", "forced_open" or "disabled" (half-open is a local probe,
    never published). `until` is wall-clock seconds since the epoch at which an "open"
    state ends (0.0 otherwise). `version` grows by one with every publication.
    """

    state: str
    until: float
    version: int


@runtime_checkable
class BreakerStateStore(Protocol):
    """Where circuit breakers publish their transitions and read each other's."""

    def read(self, name: str) -> SharedBreakerState | None:
        """The latest published state of breaker `name`, or None if none was published."""
        ...

    def publish(
        self, name: str, state: str, until: float, expected_version: int
    ) -> SharedBreakerState:
        """Compare-and-set: store `(state, until)` as version `expected_version + 1` if the
        stored version is `expected_version` (0 when nothing is stored), and return it;
        otherwise store nothing and return what is stored (a newer publication won)."""
        ...


class InMemoryBreakerStateStore:
    """Published breaker states in a dict: shares breaker state between instances in-process."""

    def __init__(self) -> None:
        self._states: dict[str, SharedBreakerState] = {}
        self._lock = threading.Lock()
        self.reads = 0  # how often breakers consulted the store: caching is observable

    def read(self, name: str) -> SharedBreakerState | None:
        """See `BreakerStateStore.read`."""
        with self._lock:
            self.reads += 1
            return self._states.get(name)

    def publish(
        self, name: str, state: str, until: float, expected_version: int
    ) -> SharedBreakerState:
        """See `BreakerStateStore.publish`."""
        with self._lock:
            current = self._states.get(name)
            version = 0 if current is None else current.version
            if version != expected_version:
                return current  # type: ignore[return-value]  # version != 0 => stored
            published = SharedBreakerState(state, float(until), version + 1)
            self._states[name] = published
            return published
