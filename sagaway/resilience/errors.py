"""Errors raised by the resilience primitives: one small hierarchy callers can catch.

`Rejected` means the protected function was *not* called; its `retry_after` (seconds, or
None when unknown) says when trying again may succeed, so a caller can wait or park
instead of failing.
"""

from __future__ import annotations

__all__ = [
    "BreakerOpen",
    "BulkheadFull",
    "RateLimited",
    "Rejected",
    "ResilienceError",
    "TimeoutExceeded",
]


def _rebuild(cls: type[ResilienceError], args: tuple, state: dict) -> ResilienceError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ResilienceError(Exception):
    """Base of every error a resilience primitive raises; `name` is the primitive's name.

    Errors pickle and unpickle with all their attributes (to cross process boundaries).
    """

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name

    def __reduce__(self) -> tuple:
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


class Rejected(ResilienceError):
    """The call was refused without calling the function.

    `retry_after` is the number of seconds after which a new attempt may be admitted
    (None when the primitive cannot tell).
    """

    def __init__(self, message: str, *, name: str, retry_after: float | None) -> None:
        super().__init__(message, name=name)
        self.retry_after = retry_after


class BreakerOpen(Rejected):
    """A circuit breaker refused the call.

    `state` is the breaker's state at refusal (a `BreakerState`, which is a str):
    "open", "half_open" with every trial slot taken, or "forced_open". `retry_after` is
    the seconds until the breaker will next admit a trial call; `retry_at` is the same
    moment as wall-clock seconds since the epoch (`time.time()` scale), suitable for
    parking work durably. `reason` says why the breaker opened.
    """

    def __init__(
        self, *, name: str, state: str, retry_after: float, retry_at: float, reason: str = ""
    ) -> None:
        # Refusing must stay cheap while a breaker is open under load: the message is
        # formatted only if someone reads it.
        Exception.__init__(self, name, state)
        self.name = name
        self.retry_after = retry_after
        self.state = state
        self.retry_at = retry_at
        self.reason = reason

    def __str__(self) -> str:
        detail = f" ({self.reason})" if self.reason else ""
        return (
            f"circuit breaker {self.name!r} is {self.state}{detail}: call not permitted, "
            f"next trial in {self.retry_after:.3f}s"
        )


class BulkheadFull(Rejected):
    """A bulkhead had no free slot within its `max_wait`; `waited` is how long we waited."""

    def __init__(self, *, name: str, max_concurrent: int, waited: float) -> None:
        super().__init__(
            f"bulkhead {name!r} is full: {max_concurrent} calls already running "
            f"(waited {waited:.3f}s for a slot)",
            name=name,
            retry_after=None,
        )
        self.max_concurrent = max_concurrent
        self.waited = waited


class RateLimited(Rejected):
    """A rate limiter had no token due within the allowed wait.

    `retry_after` is the seconds until the requested tokens will be due (they were not
    taken: a later attempt must ask again).
    """

    def __init__(self, *, name: str, tokens: float, retry_after: float, max_wait: float) -> None:
        super().__init__(
            f"rate limiter {name!r}: {tokens:g} token(s) due in {retry_after:.3f}s, "
            f"more than the allowed wait of {max_wait:.3f}s",
            name=name,
            retry_after=retry_after,
        )
        self.tokens = tokens
        self.max_wait = max_wait


class TimeoutExceeded(ResilienceError, TimeoutError):
    """A call took longer than its `Timeout`; also a builtin `TimeoutError`.

    For coroutines the call was cancelled. For plain functions it was abandoned: it keeps
    running in its worker thread, and its eventual result is discarded.
    """

    def __init__(self, *, name: str, seconds: float, abandoned: bool) -> None:
        how = "abandoned in its thread" if abandoned else "cancelled"
        super().__init__(f"{name} timed out after {seconds:g}s (call {how})", name=name)
        self.seconds = seconds
        self.abandoned = abandoned
