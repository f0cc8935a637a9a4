"""Bulkhead: at most `max_concurrent` calls at once; the rest wait up to `max_wait`, then fail.

One counter serves threads and asyncio tasks (of any event loop) alike. A released slot is
handed directly to the longest waiter, so waiters are served first come, first served and
a newcomer never overtakes them. Asyncio waiters wait on a future: the event loop is never
blocked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import EllipsisType
from typing import Any, TypeVar

from sagaway.resilience._guard import Guard
from sagaway.resilience.errors import BulkheadFull

__all__ = ["Bulkhead"]

T = TypeVar("T")


class _Waiter:
    __slots__ = ("event", "future", "granted", "loop")

    def __init__(
        self,
        event: threading.Event | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.event = event
        self.loop = loop
        self.future = future
        self.granted = False

    def wake(self) -> bool:
        """Tell the waiter it holds a slot now; False if it can no longer be told."""
        if self.event is not None:
            self.event.set()
            return True
        assert self.loop is not None and self.future is not None
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:
            return False  # its event loop is closed: the waiting task will never resume
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead(Guard):
    """Limits concurrent calls to `max_concurrent`; thread-safe, sync and async.

    A call beyond the limit waits up to `max_wait` seconds (0: not at all, None: without
    limit) for a slot, then raises `BulkheadFull` without calling the function. Use it
    as a decorator, through `.call(fn, ...)`, as `with bulkhead:` / `async with bulkhead:`,
    or with `acquire()` / `release()` around a call made elsewhere.
    """

    def __init__(self, name: str, max_concurrent: int, max_wait: float | None = 0.0) -> None:
        if not isinstance(max_concurrent, int) or isinstance(max_concurrent, bool):
            raise TypeError(f"Bulkhead({name!r}): max_concurrent={max_concurrent!r} must be an int")
        if max_concurrent < 1:
            raise ValueError(f"Bulkhead({name!r}): max_concurrent={max_concurrent} must be >= 1")
        if max_wait is not None and max_wait < 0:
            raise ValueError(
                f"Bulkhead({name!r}): max_wait={max_wait} must be >= 0 seconds (None: no limit)"
            )
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        self._in_use = 0
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()
        self.rejected = 0  # calls refused with BulkheadFull so far

    def __repr__(self) -> str:
        return f"Bulkhead({self.name!r}, {self._in_use}/{self.max_concurrent} in use)"

    @property
    def in_use(self) -> int:
        """Slots held right now."""
        return self._in_use

    @property
    def available(self) -> int:
        """Slots free right now."""
        return self.max_concurrent - self._in_use

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot right now."""
        return len(self._waiters)

    # ----------------------------------------------------------------- slots

    def try_acquire(self) -> bool:
        """Take a slot if one is free now (and nobody waits for one); never blocks."""
        with self._lock:
            if self._in_use < self.max_concurrent and not self._waiters:
                self._in_use += 1
                return True
            return False

    def acquire(self, timeout: float | EllipsisType | None = ...) -> None:
        """Take a slot, blocking the thread up to `timeout` seconds (default: `max_wait`).

        Raises `BulkheadFull` if none became free in time. Pair with `release()`.
        """
        if timeout is ...:
            timeout = self.max_wait
        lock = self._lock
        lock.acquire()
        if self._in_use < self.max_concurrent and not self._waiters:
            self._in_use += 1
            lock.release()
            return
        if timeout == 0:
            self.rejected += 1
            lock.release()
            raise BulkheadFull(name=self.name, max_concurrent=self.max_concurrent, waited=0.0)
        waiter = _Waiter(event=threading.Event())
        self._waiters.append(waiter)
        lock.release()
        start = time.monotonic()
        if waiter.event.wait(timeout):  # type: ignore[union-attr]  # built with an event above
            return
        with lock:
            if waiter.granted:
                return  # the slot arrived as we gave up: keep it
            self._waiters.remove(waiter)
            self.rejected += 1
        raise BulkheadFull(
            name=self.name, max_concurrent=self.max_concurrent, waited=time.monotonic() - start
        )

    async def acquire_async(self, timeout: float | EllipsisType | None = ...) -> None:
        """Take a slot, waiting without blocking the event loop up to `timeout` seconds
        (default: `max_wait`). Raises `BulkheadFull` if none became free in time."""
        if timeout is ...:
            timeout = self.max_wait
        with self._lock:
            if self._in_use < self.max_concurrent and not self._waiters:
                self._in_use += 1
                return
            if timeout == 0:
                self.rejected += 1
                raise BulkheadFull(name=self.name, max_concurrent=self.max_concurrent, waited=0.0)
            loop = asyncio.get_running_loop()
            waiter = _Waiter(loop=loop, future=loop.create_future())
            self._waiters.append(waiter)
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await waiter.future  # type: ignore[misc]  # built with a future above
        except BaseException as error:
            with self._lock:
                if not waiter.granted:
                    self._waiters.remove(waiter)
                    if isinstance(error, TimeoutError):
                        self.rejected += 1
                elif isinstance(error, TimeoutError):
                    return  # granted as the wait ran out: keep the slot
                else:
                    self._release_locked()  # cancelled after the grant: pass the slot on
            if isinstance(error, TimeoutError):
                raise BulkheadFull(
                    name=self.name,
                    max_concurrent=self.max_concurrent,
                    waited=time.monotonic() - start,
                ) from None
            raise

    def release(self) -> None:
        """Give back a slot taken by `acquire` / `acquire_async` / `try_acquire`.

        Raises RuntimeError when no slot is held (a release without an acquire).
        """
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._in_use <= 0:
            raise RuntimeError(f"Bulkhead {self.name!r}: release() without a matching acquire()")
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True  # the slot passes over: _in_use is unchanged
            if waiter.wake():
                return
        self._in_use -= 1

    # ----------------------------------------------------------------- calls

    def _call_sync(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        self.acquire()
        try:
            return fn(*args, **kwargs)
        finally:
            self.release()

    async def _call_async(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        await self.acquire_async()
        try:
            return await fn(*args, **kwargs)
        finally:
            self.release()

    def __enter__(self) -> Bulkhead:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    async def __aenter__(self) -> Bulkhead:
        await self.acquire_async()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release()
