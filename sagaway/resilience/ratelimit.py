"""Rate limiter: a token bucket of `rate` tokens per `per` seconds holding at most `burst`.

The bucket lives in a `RateLimiterState`: in process by default, or shared (through the
Store) so that a provider's quota holds across every worker process. A caller that may
wait reserves its tokens ahead and sleeps once, so waiters are served in arrival order
without polling.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from types import EllipsisType
from typing import Any, TypeVar

from sagaway.resilience._guard import Guard
from sagaway.resilience.clock import Clock
from sagaway.resilience.errors import RateLimited
from sagaway.resilience.shared import InMemoryRateLimiterState, RateLimiterState

__all__ = ["RateLimiter"]

T = TypeVar("T")


class RateLimiter(Guard):
    """Admits `rate` calls per `per` seconds, in bursts of up to `burst` (default:
    `max(1, rate)`, one period's worth); thread-safe, sync and async.

    A call whose token is not due within `max_wait` seconds (0: no waiting, None: no
    limit) raises `RateLimited` with `retry_after`, without calling the function; one due
    within it waits (`asyncio.sleep` for coroutines: the event loop is not blocked).
    Use it as a decorator, through `.call(fn, ...)`, as `with limiter:` /
    `async with limiter:` (one token), or with `try_acquire` / `acquire` around a call
    made elsewhere.

    `state` is where the bucket lives, keyed by `name`: several limiters with the same
    name and state share one bucket. `clock` defaults to `time.monotonic` for a private
    bucket and to `time.time` when a `state` is given, since shared buckets need a clock
    every process agrees on.
    """

    def __init__(
        self,
        name: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        *,
        max_wait: float | None = 0.0,
        state: RateLimiterState | None = None,
        clock: Clock | None = None,
    ) -> None:
        where = f"RateLimiter({name!r})"
        if not rate > 0:
            raise ValueError(f"{where}: rate={rate} must be > 0 tokens per period")
        if not per > 0:
            raise ValueError(f"{where}: per={per} must be > 0 seconds")
        if burst is None:
            burst = max(1.0, float(rate))
        if not burst > 0:
            raise ValueError(f"{where}: burst={burst} must be > 0 tokens")
        if max_wait is not None and max_wait < 0:
            raise ValueError(f"{where}: max_wait={max_wait} must be >= 0 seconds (None: no limit)")
        if state is not None and not isinstance(state, RateLimiterState):
            raise TypeError(f"{where}: state={state!r} does not implement RateLimiterState")
        self.name = name
        self.rate = float(rate)
        self.per = float(per)
        self.burst = float(burst)
        self.max_wait = max_wait
        self.shared = state is not None
        self._state: RateLimiterState = state if state is not None else InMemoryRateLimiterState()
        if clock is None:
            clock = time.time if state is not None else time.monotonic
        self._clock = clock
        self.rejected = 0  # calls refused with RateLimited so far
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter({self.name!r}, {self.rate:g} per {self.per:g}s, burst {self.burst:g})"

    def _take(self, tokens: float, max_wait: float) -> float:
        if not 0 < tokens <= self.burst:
            raise ValueError(
                f"RateLimiter({self.name!r}): asked for {tokens:g} tokens; a request must be "
                f"> 0 and at most burst={self.burst:g}, or it could never be granted"
            )
        return self._state.take(
            self.name,
            rate=self.rate,
            per=self.per,
            burst=self.burst,
            tokens=tokens,
            now=self._clock(),
            max_wait=max_wait,
        )

    def try_acquire(self, tokens: float = 1) -> float:
        """Take `tokens` if they are available now and return 0.0; otherwise take nothing
        and return the seconds until they will be due. Never blocks."""
        return self._take(tokens, 0.0)

    def _reserve(self, tokens: float, timeout: float | EllipsisType | None) -> float:
        limit = self.max_wait if timeout is ... else timeout
        wait = self._take(tokens, float("inf") if limit is None else limit)
        if limit is not None and wait > limit:
            with self._count_lock:
                self.rejected += 1
            raise RateLimited(name=self.name, tokens=tokens, retry_after=wait, max_wait=limit)
        return wait

    def acquire(self, tokens: float = 1, timeout: float | EllipsisType | None = ...) -> None:
        """Take `tokens`, sleeping the thread until they are due if that is within `timeout`
        seconds (default: `max_wait`); else raise `RateLimited` at once, taking nothing."""
        wait = self._reserve(tokens, timeout)
        if wait > 0:
            time.sleep(wait)

    async def acquire_async(
        self, tokens: float = 1, timeout: float | EllipsisType | None = ...
    ) -> None:
        """Like `acquire`, waiting with `asyncio.sleep`. Tokens reserved by a wait that is
        cancelled stay spent (the quota errs on the safe side)."""
        wait = self._reserve(tokens, timeout)
        if wait > 0:
            await asyncio.sleep(wait)

    def _call_sync(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        self.acquire()
        return fn(*args, **kwargs)

    async def _call_async(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        await self.acquire_async()
        return await fn(*args, **kwargs)

    def __enter__(self) -> RateLimiter:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    async def __aenter__(self) -> RateLimiter:
        await self.acquire_async()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None
