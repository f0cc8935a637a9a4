"""What every primitive shares: `.call(fn, ...)` and decorator use for sync and async functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_CO_COROUTINE = inspect.CO_COROUTINE


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling `fn` returns a coroutine (an `async def` function, method or partial).

    Plain functions and bound methods are answered from their code flags, which is several
    times cheaper than `inspect.iscoroutinefunction` on the per-call path.
    """
    code = getattr(fn, "__code__", None)
    if code is not None:
        return bool(code.co_flags & _CO_COROUTINE)
    if inspect.iscoroutinefunction(fn):
        return True
    return callable(fn) and inspect.iscoroutinefunction(type(fn).__call__)


class Guard:
    """Mixin: a primitive implementing `_call_sync` and `_call_async` gets `.call` and `@`.

    `guard.call(fn, *args, **kwargs)` runs a plain function under the guard and returns its
    result; for an `async def` function it returns a coroutine to await. `@guard` wraps a
    function of either kind, keeping its name, docstring and signature.
    """

    __slots__ = ()

    def _call_sync(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        raise NotImplementedError

    async def _call_async(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        raise NotImplementedError

    @overload
    def call(
        self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any
    ) -> Awaitable[T]: ...

    @overload
    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call `fn(*args, **kwargs)` under this guard (a coroutine to await for async `fn`)."""
        if is_async(fn):
            return self._call_async(fn, args, kwargs)
        return self._call_sync(fn, args, kwargs)

    def __call__(self, fn: F) -> F:
        """Decorate `fn` (sync or async) so every call goes through this guard."""
        if not callable(fn):
            raise TypeError(
                f"{type(self).__name__} decorates a function; got {type(fn).__name__} "
                f"({fn!r}). Use it as @guard above a def, or guard.call(fn, ...)."
            )
        if is_async(fn):
            call_async = self._call_async

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await call_async(fn, args, kwargs)

            return async_wrapper  # type: ignore[return-value]  # called as fn is, returns what fn does

        call_sync = self._call_sync

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return call_sync(fn, args, kwargs)

        return wrapper  # type: ignore[return-value]  # called as fn is, returns what fn does
