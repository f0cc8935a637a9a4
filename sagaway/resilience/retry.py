"""Retry policies: capped exponential backoff with jitter, and the `Permanent` escape hatch.

A `Retry` is policy data the saga engine reads (`allows`, `delay`, `record_success`); it
also runs calls itself, as a decorator or through `.call(fn, ...)`, sync or async.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sagaway.resilience._guard import Guard
from sagaway.resilience.budget import RetryBudget
from sagaway.resilience.errors import Rejected

__all__ = ["Jitter", "Permanent", "Retry"]

T = TypeVar("T")
log = logging.getLogger("sagaway.resilience")

Jitter = Literal["full", "equal", "decorrelated", "none"]
_JITTERS = ("full", "equal", "decorrelated", "none")


class Permanent(Exception):
    """Raise this (or `raise Permanent(...) from error`) to fail at once, without retries.

    A step that raises `Permanent` is not retried; before the pivot its saga compensates.
    """


@dataclass(frozen=True)
class Retry(Guard):
    """How often and how patiently to retry a failing call.

    `attempts` is the most tries in all, the first included (`Retry(attempts=1)` never
    retries; `None` retries without limit). The n-th retry waits about
    `min(cap, base * multiplier ** (n - 1))` seconds, randomised by `jitter`:
    "full" (default) draws uniformly from [0, that], "equal" from [that/2, that],
    "decorrelated" from [base, 3 * previous delay] (capped), "none" waits exactly that.
    Only exceptions that are instances of `on` and not of `not_on` are retried;
    `Permanent` never is.

    With a `budget` (a `RetryBudget`, usually shared by many policies and calls), each
    retry must also be paid for from it: `allows` spends a token when it says yes, and
    `record_success` earns a fraction back.

    Used on its own (`@retry`, `retry.call(fn, ...)`), a policy sleeps between tries
    (`asyncio.sleep` for coroutines), waiting at least the `retry_after` of a `Rejected`
    error (a rate limit, a half-open breaker) but giving up at once when that is more
    than `cap` (an open breaker), and re-raises the last error when it stops.
    """

    attempts: int | None = 3
    base: float = 0.1
    cap: float = 10.0
    multiplier: float = 2.0
    jitter: Jitter = "full"
    on: tuple[type[BaseException], ...] = (Exception,)
    not_on: tuple[type[BaseException], ...] = ()
    budget: RetryBudget | None = None

    def __post_init__(self) -> None:
        if self.attempts is not None and (not isinstance(self.attempts, int) or self.attempts < 1):
            raise ValueError(
                f"Retry(attempts={self.attempts!r}): attempts counts every try, the first "
                "included, so it must be an int >= 1 (or None for no limit)"
            )
        if self.base < 0 or self.cap < 0:
            raise ValueError(f"Retry(base={self.base}, cap={self.cap}): delays must be >= 0")
        if self.multiplier < 1:
            raise ValueError(f"Retry(multiplier={self.multiplier}): must be >= 1")
        if self.jitter not in _JITTERS:
            raise ValueError(f"Retry(jitter={self.jitter!r}): use one of {', '.join(_JITTERS)}")
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise TypeError(f"Retry(budget={self.budget!r}): expected a RetryBudget or None")
        # Accept a single exception class where a tuple is expected.
        for name in ("on", "not_on"):
            value = getattr(self, name)
            if isinstance(value, type):
                object.__setattr__(self, name, (value,))

    def retryable(self, error: BaseException) -> bool:
        """Whether `error` is of a kind this policy retries at all."""
        if isinstance(error, Permanent):
            return False
        return isinstance(error, self.on) and not isinstance(error, self.not_on)

    def allows(self, error: BaseException, tries: int) -> bool:
        """Whether another try may follow `tries` failed tries, the last raising `error`.

        With a budget, a True answer spends one retry token: ask once per failed try.
        """
        if not self.retryable(error):
            return False
        if self.attempts is not None and tries >= self.attempts:
            return False
        return self.budget is None or self.budget.withdraw()

    def record_success(self) -> None:
        """Report a successful call (first try or not): it earns the budget, if any, a share."""
        if self.budget is not None:
            self.budget.deposit()

    def delay(
        self, retry: int, previous: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before the `retry`-th retry (1-based).

        `previous` is the last delay, used by decorrelated jitter.
        """
        draw = (rng or random).uniform
        ceiling = min(self.cap, self.base * self.multiplier ** max(0, retry - 1))
        if self.jitter == "full":
            return draw(0.0, ceiling)
        if self.jitter == "equal":
            return draw(ceiling / 2, ceiling)
        if self.jitter == "decorrelated":
            last = self.base if previous is None else previous
            return min(self.cap, draw(self.base, max(self.base, last * 3)))
        return ceiling

    def _gives_up_on(self, error: BaseException) -> bool:
        # A refusal that says "come back later than cap" (an open breaker) ends the
        # call now: blocking that long inside one call would hide the outage.
        return (
            isinstance(error, Rejected)
            and error.retry_after is not None
            and error.retry_after > self.cap
        )

    @staticmethod
    def _wait_after(error: BaseException, delay: float) -> float:
        # A refusal that says when to come back is worth honouring: retrying an open
        # breaker or an empty bucket sooner only spends an attempt.
        if isinstance(error, Rejected) and error.retry_after is not None:
            return max(delay, error.retry_after)
        return delay

    def _call_sync(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        tries = 0
        previous: float | None = None
        while True:
            tries += 1
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:
                if self._gives_up_on(error) or not self.allows(error, tries):
                    raise
                previous = self.delay(tries, previous)
                wait = self._wait_after(error, previous)
                log.debug("try %d of %r failed (%r); retrying in %.3fs", tries, fn, error, wait)
                if wait > 0:
                    time.sleep(wait)
                continue
            self.record_success()
            return result

    async def _call_async(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        tries = 0
        previous: float | None = None
        while True:
            tries += 1
            try:
                result = await fn(*args, **kwargs)
            except BaseException as error:
                if self._gives_up_on(error) or not self.allows(error, tries):
                    raise
                previous = self.delay(tries, previous)
                wait = self._wait_after(error, previous)
                log.debug("try %d of %r failed (%r); retrying in %.3fs", tries, fn, error, wait)
                await asyncio.sleep(wait)
                continue
            self.record_success()
            return result
