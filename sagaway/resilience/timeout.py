"""Timeout: bound how long a call may take.

Coroutines are cancelled at the deadline (`asyncio.timeout`): cancellation is real.

Plain functions cannot be interrupted in Python: no thread can be killed, and a function
blocked in C (a socket read, a lock) cannot even see a signal. So a sync call runs in a
fresh daemon thread and the caller stops waiting at the deadline: the call is
*abandoned*, not stopped. It keeps running, holding whatever it holds, and its eventual
result or exception is discarded. Give the function its own timeouts (socket, driver,
HTTP client) so abandoned calls end too; this Timeout guarantees the caller's latency,
not the callee's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from sagaway.resilience._guard import Guard
from sagaway.resilience.errors import TimeoutExceeded

__all__ = ["Timeout"]

T = TypeVar("T")


class Timeout(Guard):
    """Raises `TimeoutExceeded` (a `TimeoutError`) when a call takes more than `seconds`.

    For `async def` functions and `async with Timeout(s):` blocks the work is cancelled.
    For plain functions the call runs in a new daemon thread (context variables are
    copied into it) and is abandoned at the deadline: see the module notes. A
    `TimeoutError` raised by the function itself passes through unchanged.
    """

    def __init__(
        self,
        seconds: float,
        name: str | None = None,
        *,
        error: type[TimeoutExceeded] = TimeoutExceeded,
    ) -> None:
        if not seconds > 0:
            raise ValueError(f"Timeout(seconds={seconds!r}): seconds must be > 0")
        self.seconds = float(seconds)
        self.name = name
        self.error = error  # raised at the deadline: TimeoutExceeded or a subclass
        self._scopes: dict[asyncio.Task[Any], list[asyncio.Timeout]] = {}

    def __repr__(self) -> str:
        label = f", name={self.name!r}" if self.name else ""
        return f"Timeout({self.seconds:g}{label})"

    def _label(self, fn: Callable[..., Any] | None) -> str:
        if self.name:
            return self.name
        if fn is None:
            return "block"
        return getattr(fn, "__qualname__", None) or repr(fn)

    def _call_sync(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        context = contextvars.copy_context()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = context.run(fn, *args, **kwargs)
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)

        label = self._label(fn)
        threading.Thread(target=run, name=f"sagaway-timeout:{label}", daemon=True).start()
        done, _ = concurrent.futures.wait([future], timeout=self.seconds)
        if not done:
            raise self.error(name=label, seconds=self.seconds, abandoned=True)
        return future.result()

    async def _call_async(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        scope = asyncio.timeout(self.seconds)
        try:
            async with scope:
                return await fn(*args, **kwargs)
        except TimeoutError:
            if scope.expired():
                raise self.error(
                    name=self._label(fn), seconds=self.seconds, abandoned=False
                ) from None
            raise

    def __enter__(self) -> NoReturn:
        raise TypeError(
            "a `with Timeout(...)` block cannot be interrupted in Python; use "
            "`async with Timeout(...)` in a coroutine, or timeout.call(fn, ...) / @timeout "
            "for a plain function (run in a thread and abandoned at the deadline)"
        )

    def __exit__(self, *exc: Any) -> None:
        return None

    async def __aenter__(self) -> Timeout:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("async with Timeout(...) must run inside an asyncio task")
        scope = asyncio.timeout(self.seconds)
        await scope.__aenter__()
        self._scopes.setdefault(task, []).append(scope)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        stack = self._scopes[task]
        scope = stack.pop()
        if not stack:
            del self._scopes[task]
        try:
            await scope.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            if scope.expired():
                raise self.error(
                    name=self._label(None), seconds=self.seconds, abandoned=False
                ) from None
            raise
