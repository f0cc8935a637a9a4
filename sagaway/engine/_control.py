"""The engine's control-flow signals: how an execution unwinds the saga function.

They are `BaseException`s on purpose, so that saga code catching `Exception` cannot swallow
them; none of them ever reaches a user. `Refused` is the one ordinary exception: a guard's
refusal that outlived the step's deadline, turned into the step's failure.
"""

from __future__ import annotations

import threading

from sagaway.errors import Rejected
from sagaway.resilience.retry import Permanent
from sagaway.store.base import Wait

__all__ = ["Abandon", "CancelRequested", "Refused", "Suspend", "is_interrupt", "unwrap_permanent"]


class Suspend(BaseException):
    """The run rests until `wake_at` (with `wait`, until that signal or park marker):
    unwinds the saga function. `signal` False: only the timer wakes it."""

    def __init__(self, wake_at: float | None, wait: Wait | None, signal: bool = True) -> None:
        self.wake_at, self.wait, self.signal = wake_at, wait, signal


class Abandon(BaseException):
    """Stop executing this run now: the lease was lost (`release` False), the worker is
    stopping, or the store failed (`retry_in`: hand the run back due that much later).
    A `quiet` one is logged at debug level only (the store said once that it is gone)."""

    def __init__(
        self, release: bool, retry_in: float = 0.0, why: str = "", quiet: bool = False
    ) -> None:
        self.release, self.retry_in, self.why, self.quiet = release, retry_in, why, quiet


class CancelRequested(BaseException):
    """The run was asked to cancel: unwind."""


class Refused(Exception):
    """A step stayed refused by its breaker, rate limit or bulkhead past its deadline."""

    def __init__(self, error: Rejected) -> None:
        super().__init__(str(error))
        self.error = error


def is_interrupt(error: BaseException) -> bool:
    """A Ctrl-C in the main thread (a caller executing its own run): it stops the program,
    it is not the saga's failure. Everywhere else a KeyboardInterrupt is user code's."""
    return (
        isinstance(error, KeyboardInterrupt)
        and threading.current_thread() is threading.main_thread()
    )


def unwrap_permanent(error: BaseException) -> BaseException:
    """The error a `Permanent` stands for: `Permanent(error)` or `raise Permanent() from
    error` records `error`; a bare `Permanent("reason")` records itself."""
    if isinstance(error, Permanent):
        if error.args and isinstance(error.args[0], BaseException):
            return error.args[0]
        if error.__cause__ is not None:
            return error.__cause__
    return error
