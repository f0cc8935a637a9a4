"""Retry policies: capped exponential backoff with jitter, and the `Permanent` escape hatch."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["Jitter", "Permanent", "Retry"]

Jitter = Literal["full", "equal", "decorrelated", "none"]
_JITTERS = ("full", "equal", "decorrelated", "none")


class Permanent(Exception):
    """Raise this (or `raise Permanent(...) from error`) to fail at once, without retries.

    A step that raises `Permanent` is not retried; before the pivot its saga compensates.
    """


@dataclass(frozen=True)
class Retry:
    """How often and how patiently to retry a failing call.

    `attempts` is the most tries in all, the first included (`Retry(attempts=1)` never
    retries; `None` retries without limit). The n-th retry waits about
    `min(cap, base * multiplier ** (n - 1))` seconds, randomised by `jitter`:
    "full" (default) draws uniformly from [0, that], "equal" from [that/2, that],
    "decorrelated" from [base, 3 * previous delay] (capped), "none" waits exactly that.
    Only exceptions that are instances of `on` and not of `not_on` are retried;
    `Permanent` never is.
    """

    attempts: int | None = 3
    base: float = 0.1
    cap: float = 10.0
    multiplier: float = 2.0
    jitter: Jitter = "full"
    on: tuple[type[BaseException], ...] = (Exception,)
    not_on: tuple[type[BaseException], ...] = ()

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
        """Whether another try may follow `tries` failed tries, the last raising `error`."""
        if not self.retryable(error):
            return False
        return self.attempts is None or tries < self.attempts

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
