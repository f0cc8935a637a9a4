"""AdaptiveLimit: a concurrency limit that follows measured latency instead of a hand-set number.

A call takes a permit (`try_acquire`, never blocking) and reports how it went: `success()`
records its latency, `dropped()` signals overload (a timeout, a 503 from downstream),
`ignore()` releases it without a sample. The algorithm (`"gradient"`, the default, or
`"aimd"`, see `_limit_algorithms`) moves the limit from those reports. One lock, held for
microseconds and never across a call, serves threads and asyncio tasks alike: nothing waits,
so the event loop is never blocked.
"""

from __future__ import annotations

import contextvars
import inspect
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sagaway.resilience._guard import Guard
from sagaway.resilience._limit_algorithms import ALGORITHMS, Algorithm
from sagaway.resilience.clock import Clock
from sagaway.resilience.errors import LimitExceeded, Rejected

__all__ = ["AdaptiveLimit", "LimitPermit"]

T = TypeVar("T")

# The `retry_after` of a refusal before any call was measured.
_DEFAULT_RETRY_AFTER = 0.1
# Weight of the newest latency in the running average that `retry_after` reports.
_LATENCY_WEIGHT = 0.1


class LimitPermit:
    """One admitted call. Report it exactly once: `success()`, `dropped()` or `ignore()`;
    a second report raises RuntimeError. `started` is the clock reading at admission."""

    __slots__ = ("_epoch", "_in_flight", "_limit", "_reported", "_seq", "started")

    def __init__(
        self, limit: AdaptiveLimit, started: float, seq: int, epoch: int, in_flight: int
    ) -> None:
        self._limit = limit
        self.started = started
        self._seq = seq
        self._epoch = epoch
        self._in_flight = in_flight  # calls in flight at admission, this one included
        self._reported = False

    def success(self) -> None:
        """The call finished: record its latency (since admission) and release the permit."""
        self._limit._report(self, "success")

    def dropped(self) -> None:
        """The call met overload (timed out, was refused downstream): back off and release."""
        self._limit._report(self, "dropped")

    def ignore(self) -> None:
        """Release without a sample: the call says nothing about load (a client error)."""
        self._limit._report(self, "ignore")

    def finish(self, error: BaseException | None = None) -> None:
        """Report by how the call ended, as the guard forms do: None is a success, an error
        of the limit's `dropped_on` a drop, another `Exception` a success (the dependency
        answered), any other `BaseException` (a cancellation) ignored."""
        self._limit._finish(self, error)

    def __repr__(self) -> str:
        state = "reported" if self._reported else "held"
        return f"<LimitPermit of {self._limit.name!r} #{self._seq} {state}>"


def _bound_int(where: str, name: str, value: object, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{where}: {name}={value!r} must be an int")
    if value < low:
        raise ValueError(f"{where}: {name}={value} must be >= {low}")
    return value


class AdaptiveLimit(Guard):
    """A concurrency limit that follows measured latency; thread-safe, sync and async.

    `algorithm` is `"gradient"` (latency against a measured no-load latency, as Envoy's
    adaptive concurrency filter) or `"aimd"` (additive increase, multiplicative decrease on
    drops, as Netflix's concurrency-limits); `params` are the algorithm's parameters (see
    docs/resilience.md). The limit starts at `initial` and stays within
    [`min_limit`, `max_limit`].

    `try_acquire(share)` gives a `LimitPermit`, or None when `floor(limit * share)` calls are
    already in flight: a `share` below 1 sheds low-priority work before high-priority work.
    As a guard (decorator, `.call`, `with`, `async with`) a full limit raises
    `LimitExceeded`; a block or call that returns is a success, one raising an error of
    `dropped_on` (default: timeouts and refusals of the guards below) is a drop, any other
    `Exception` a success (the dependency answered), and a `BaseException` (cancellation)
    is ignored.
    """

    def __init__(
        self,
        algorithm: str = "gradient",
        initial: int = 20,
        min_limit: int = 1,
        max_limit: int = 1000,
        clock: Clock = time.monotonic,
        *,
        name: str = "adaptive",
        dropped_on: tuple[type[BaseException], ...] = (TimeoutError, Rejected),
        **params: Any,
    ) -> None:
        where = f"AdaptiveLimit({name!r})"
        kind = ALGORITHMS.get(algorithm) if isinstance(algorithm, str) else None
        if kind is None:
            raise ValueError(
                f"{where}: algorithm={algorithm!r} is not one of {sorted(ALGORITHMS)}: use "
                '"gradient" (follows latency) or "aimd" (backs off on drops)'
            )
        min_limit = _bound_int(where, "min_limit", min_limit, 1)
        max_limit = _bound_int(where, "max_limit", max_limit, min_limit)
        initial = _bound_int(where, "initial", initial, min_limit)
        if initial > max_limit:
            raise ValueError(f"{where}: initial={initial} must be <= max_limit={max_limit}")
        if not callable(clock):
            raise TypeError(f"{where}: clock={clock!r} must be a callable returning seconds")
        if not isinstance(dropped_on, tuple) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in dropped_on
        ):
            raise TypeError(f"{where}: dropped_on={dropped_on!r} must be a tuple of exceptions")
        unknown = sorted(set(params) - set(_parameters(kind)))
        if unknown:
            raise TypeError(
                f"{where}: the {algorithm!r} algorithm has no parameter "
                f"{', '.join(map(repr, unknown))}; it takes {sorted(_parameters(kind))} "
                "(see docs/resilience.md)"
            )
        self._algorithm: Algorithm = kind(where, initial, min_limit, max_limit, **params)
        self.name = name
        self.algorithm = algorithm
        self.min_limit, self.max_limit = min_limit, max_limit
        self.dropped_on = dropped_on
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._seq = 0
        self._latency: float | None = None  # running average, for retry_after
        self.shed = 0  # acquisitions refused so far
        self.dropped = 0  # permits reported as dropped so far
        # Permits held by `with` / `async with` blocks of this thread or task, innermost last.
        self._held: contextvars.ContextVar[tuple[LimitPermit, ...]] = contextvars.ContextVar(
            f"sagaway-adaptive-{name}-{id(self)}", default=()
        )

    def __repr__(self) -> str:
        return f"AdaptiveLimit({self.name!r}, {self.algorithm}, {self._in_flight}/{self.limit})"

    @property
    def limit(self) -> int:
        """The current limit: how many calls may be in flight now."""
        return max(1, int(self._algorithm.admits(self._algorithm.limit)))

    @property
    def in_flight(self) -> int:
        """Permits held right now."""
        return self._in_flight

    def stats(self) -> dict[str, Any]:
        """A snapshot for stats pages: limit, in flight, shed and dropped counts, and the
        algorithm's own measurements (the gradient's `min_rtt`, `sample_rtt`...)."""
        with self._lock:
            return {
                "name": self.name,
                "algorithm": self.algorithm,
                "limit": self.limit,
                "in_flight": self._in_flight,
                "shed": self.shed,
                "dropped": self.dropped,
                "latency": self._latency,
                **self._algorithm.describe(),
            }

    # --------------------------------------------------------------- permits

    def try_acquire(self, share: float = 1.0) -> LimitPermit | None:
        """A permit, or None when `floor(limit * share)` calls are already in flight.

        Never blocks. `share` in (0, 1]: the fraction of the limit this kind of work may
        fill, so that work with a smaller share is shed first as the limit falls.
        """
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ValueError(
                f"AdaptiveLimit({self.name!r}).try_acquire: share={share!r} must be in (0, 1] "
                "(1: may fill the whole limit; 0.5: shed once half of it is in use)"
            )
        with self._lock:
            algorithm = self._algorithm
            if self._in_flight >= math.floor(algorithm.admits(algorithm.limit) * share):
                self.shed += 1
                return None
            self._in_flight += 1
            self._seq += 1
            algorithm.admitted(self._seq)
            return LimitPermit(self, self._clock(), self._seq, algorithm.epoch(), self._in_flight)

    def acquire(self, share: float = 1.0) -> LimitPermit:
        """A permit, or `LimitExceeded` (with `retry_after`) at once when the limit is full."""
        permit = self.try_acquire(share)
        if permit is None:
            raise self._refusal(share)
        return permit

    def _refusal(self, share: float) -> LimitExceeded:
        latency = self._latency
        return LimitExceeded(
            name=self.name,
            limit=self.limit,
            in_flight=self._in_flight,
            share=share,
            retry_after=_DEFAULT_RETRY_AFTER if latency is None else max(latency, 0.001),
        )

    def _report(self, permit: LimitPermit, outcome: str) -> None:
        now = self._clock()
        with self._lock:
            if permit._reported:
                raise RuntimeError(
                    f"{permit!r} was already reported: call success(), dropped() or ignore() "
                    "once per permit"
                )
            permit._reported = True
            self._in_flight -= 1
            if outcome == "ignore":
                return
            if outcome == "dropped":
                self.dropped += 1
                self._algorithm.on_drop(permit._seq)
                return
            rtt = max(0.0, now - permit.started)
            average = self._latency
            self._latency = rtt if average is None else average + _LATENCY_WEIGHT * (rtt - average)
            self._algorithm.on_success(now, rtt, permit._in_flight, permit._epoch, permit._seq)

    def _finish(self, permit: LimitPermit, error: BaseException | None) -> None:
        if error is None:
            permit.success()
        elif not isinstance(error, Exception):
            permit.ignore()
        elif isinstance(error, self.dropped_on):
            permit.dropped()
        else:
            permit.success()

    # ----------------------------------------------------------------- calls

    def _call_sync(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        permit = self.acquire()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            self._finish(permit, error)
            raise
        permit.success()
        return result

    async def _call_async(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        permit = self.acquire()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            self._finish(permit, error)
            raise
        permit.success()
        return result

    def _enter(self) -> AdaptiveLimit:
        permit = self.acquire()
        self._held.set((*self._held.get(), permit))
        return self

    def _exit(self, error: BaseException | None) -> None:
        held = self._held.get()
        if not held:
            raise RuntimeError(f"AdaptiveLimit({self.name!r}): block exited without a permit")
        self._held.set(held[:-1])
        self._finish(held[-1], error)

    def __enter__(self) -> AdaptiveLimit:
        return self._enter()

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        self._exit(error)

    async def __aenter__(self) -> AdaptiveLimit:
        return self._enter()

    async def __aexit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        self._exit(error)


def _parameters(kind: type[Algorithm]) -> list[str]:
    """The keyword parameters an algorithm takes (what `**params` may hold)."""
    found = inspect.signature(kind.__init__).parameters.values()
    return [p.name for p in found if p.kind is inspect.Parameter.KEYWORD_ONLY]
