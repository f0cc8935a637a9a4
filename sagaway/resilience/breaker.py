"""Circuit breaker: stop calling a dependency that is failing or slow, and probe it to recover.

State machine (see docs/resilience.md for the full table):

    closed --(failure or slow-call rate >= threshold over >= min_calls)--> open
    open --(open_for elapsed)--> half_open            (checked lazily, on the next call)
    half_open --(all half_open_calls trials done, rates below thresholds)--> closed
    half_open --(... rates at or above a threshold, or half_open_timeout)--> open
    any --force_open()--> forced_open    any --disable()--> disabled    any --reset()--> closed

The closed path takes no lock to admit a call and one lock to record its outcome.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from threading import Lock
from typing import Any, TypeVar

from sagaway.resilience._guard import Guard
from sagaway.resilience.breaker_state import (
    BreakerMetrics,
    BreakerPermit,
    BreakerState,
    BreakerTransition,
)
from sagaway.resilience.clock import Clock
from sagaway.resilience.errors import BreakerOpen
from sagaway.resilience.shared import BreakerStateStore, SharedBreakerState
from sagaway.resilience.window import FAILED, SLOW, CountWindow, TimeWindow

__all__ = ["BreakerMetrics", "BreakerPermit", "BreakerState", "BreakerTransition", "CircuitBreaker"]

T = TypeVar("T")
log = logging.getLogger("sagaway.resilience")

ErrorFilter = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)

# While every trial slot of a half-open breaker is taken, the outcome is not known yet:
# tell callers to come back soon rather than after the whole half-open timeout.
HALF_OPEN_RETRY_HINT = 1.0
_NO_RECORD = -1  # generation given to calls of a disabled breaker: never matches


_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
_FORCED_OPEN, _DISABLED = BreakerState.FORCED_OPEN, BreakerState.DISABLED


def _error_filter(value: ErrorFilter, what: str) -> Callable[[BaseException], bool]:
    if isinstance(value, type) and issubclass(value, BaseException):
        value = (value,)
    if isinstance(value, tuple):
        if not all(isinstance(v, type) and issubclass(v, BaseException) for v in value):
            raise TypeError(f"CircuitBreaker({what}={value!r}): expected exception classes")
        classes = value
        return lambda error: isinstance(error, classes)
    if callable(value):
        # A class given as the predicate (bool, say) is narrowed by mypy to type[object] by the
        # isinstance(value, type) above; it is still the callable the signature promised.
        return value  # type: ignore[return-value]
    raise TypeError(
        f"CircuitBreaker({what}={value!r}): give an exception class, a tuple of them, "
        "or a function error -> bool"
    )


class CircuitBreaker(Guard):
    """Fails calls fast while a dependency is failing or slow; thread-safe, sync and async.

    Opens when, over the sliding `window` (an int or `CountWindow(n)`: the last n calls;
    `TimeWindow(s)`: the last s seconds) holding at least `min_calls` calls, the failure
    rate reaches `failure_rate` or the share of calls lasting `slow_call_duration` seconds
    or more reaches `slow_call_rate` (rates are fractions in (0, 1]). Open, it refuses
    calls with `BreakerOpen` without calling the function; after `open_for` seconds it
    lets exactly `half_open_calls` trial calls through and closes or reopens on their
    rates. Trials not all reported within `half_open_timeout` reopen it.

    An exception counts as a failure when it matches `record` and not `ignore` (classes,
    or functions error -> bool); one that matches `ignore` is not counted at all; any
    other `Exception` counts as a success (the dependency answered). Base exceptions
    that are not `Exception` (cancellation, KeyboardInterrupt) are never counted.

    `on_transition` (a function or a list of them) is called with each
    `BreakerTransition`, outside the breaker's lock; the last `keep_events` transitions
    are kept in `events`. With `shared` (a `BreakerStateStore`), transitions to open,
    closed, forced_open and disabled are published, and published states of the same
    name are read at most every `shared_ttl` seconds and honoured.

    `clock` (monotonic seconds) times windows and periods; `wall_clock` stamps events,
    `BreakerOpen.retry_at` and shared state.

    Use it as a decorator, through `.call(fn, ...)`, around a block (`with breaker:` /
    `async with breaker:`, which raise `BreakerOpen` on entry and record the block's
    outcome), or with `acquire()` and a `BreakerPermit` for calls timed elsewhere.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_rate: float = 0.5,
        slow_call_rate: float = 1.0,
        slow_call_duration: float = 10.0,
        min_calls: int = 20,
        window: int | CountWindow | TimeWindow = 100,
        open_for: float = 30.0,
        half_open_calls: int = 5,
        half_open_timeout: float = 60.0,
        record: ErrorFilter = Exception,
        ignore: ErrorFilter = (),
        on_transition: Callable[[BreakerTransition], Any]
        | list[Callable[[BreakerTransition], Any]]
        | None = None,
        shared: BreakerStateStore | None = None,
        shared_ttl: float = 1.0,
        keep_events: int = 100,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        where = f"CircuitBreaker({name!r})"
        for label, rate in (("failure_rate", failure_rate), ("slow_call_rate", slow_call_rate)):
            if not 0 < rate <= 1:
                hint = f"; {rate}% is {rate / 100:g}" if 1 < rate <= 100 else ""
                raise ValueError(f"{where}: {label}={rate} must be a fraction in (0, 1]{hint}")
        if isinstance(window, int) and not isinstance(window, bool):
            window = CountWindow(window)
        if not isinstance(window, CountWindow | TimeWindow):
            raise TypeError(
                f"{where}: window={window!r}: use an int, CountWindow(n) or TimeWindow(s)"
            )
        if not isinstance(min_calls, int) or min_calls < 1:
            raise ValueError(f"{where}: min_calls={min_calls!r} must be an int >= 1")
        if isinstance(window, CountWindow) and min_calls > window.size:
            raise ValueError(
                f"{where}: min_calls={min_calls} exceeds the window of {window.size} calls, so "
                "the breaker could never open; lower min_calls or widen the window"
            )
        if not isinstance(half_open_calls, int) or half_open_calls < 1:
            raise ValueError(f"{where}: half_open_calls={half_open_calls!r} must be an int >= 1")
        for label, seconds in (
            ("slow_call_duration", slow_call_duration),
            ("open_for", open_for),
            ("shared_ttl", shared_ttl),
        ):
            if seconds < 0:
                raise ValueError(f"{where}: {label}={seconds} must be >= 0 seconds")
        if half_open_timeout <= 0:
            raise ValueError(f"{where}: half_open_timeout={half_open_timeout} must be > 0 seconds")
        if shared is not None and not isinstance(shared, BreakerStateStore):
            raise TypeError(f"{where}: shared={shared!r} does not implement BreakerStateStore")

        self.name = name
        self.failure_rate = failure_rate
        self.slow_call_rate = slow_call_rate
        self.slow_call_duration = slow_call_duration
        self.min_calls = min_calls
        self.window = window
        self.open_for = open_for
        self.half_open_calls = half_open_calls
        self.half_open_timeout = half_open_timeout
        self.shared = shared
        self.shared_ttl = shared_ttl
        self._record_filter = _error_filter(record, "record")
        self._ignore_filter = _error_filter(ignore, "ignore")
        if on_transition is None:
            on_transition = []
        elif callable(on_transition):
            on_transition = [on_transition]
        self._listeners: list[Callable[[BreakerTransition], Any]] = list(on_transition)
        self._events: deque[BreakerTransition] = deque(maxlen=keep_events)
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = Lock()

        self._window = window.build(min_calls, failure_rate, slow_call_rate)
        self._state = _CLOSED
        self._generation = 0
        self._fast = shared is None  # closed and unshared: admit without the lock
        self._open_until = 0.0
        self._half_open_since = 0.0
        self._trials_left = 0
        self._trials_done = 0
        self._trial_failures = 0
        self._trial_slow = 0
        self._open_reason = ""
        self._not_permitted = 0
        self._shared_version = 0
        self._shared_next_read = float("-inf")
        # Permits of `with breaker:` blocks, per thread and per asyncio task.
        self._active: ContextVar[tuple[BreakerPermit, ...]] = ContextVar(
            f"breaker {name} permits", default=()
        )

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value!r})"

    # ----------------------------------------------------------------- observation

    @property
    def state(self) -> BreakerState:
        """The current state, after any transition that is due (open -> half_open ...)."""
        now = self._clock()
        if self.shared is not None and now >= self._shared_next_read:
            self._refresh_shared(now)
        fired: list[tuple[BreakerTransition, bool]] = []
        with self._lock:
            self._apply_timers(now, fired)
            state = self._state
        self._emit(fired)
        return state

    @property
    def events(self) -> list[BreakerTransition]:
        """The most recent transitions, oldest first."""
        with self._lock:
            return list(self._events)

    def metrics(self) -> BreakerMetrics:
        """Counts and rates of the closed-state window now, and refusals so far."""
        state = self.state
        with self._lock:
            counts = self._window.counts(self._clock())
            rated = counts.calls >= self.min_calls
            return BreakerMetrics(
                state=state,
                calls=counts.calls,
                failures=counts.failures,
                slow_calls=counts.slow,
                failure_rate=counts.failures / counts.calls if rated else None,
                slow_call_rate=counts.slow / counts.calls if rated else None,
                not_permitted=self._not_permitted,
            )

    def add_listener(self, listener: Callable[[BreakerTransition], Any]) -> None:
        """Call `listener(transition)` on every state change from now on."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

    # ----------------------------------------------------------------- control

    def force_open(self) -> None:
        """Refuse every call until `reset()` (published when shared)."""
        self._manual(_FORCED_OPEN, "force_open()")

    def disable(self) -> None:
        """Let every call through and record nothing until `reset()` (published when shared)."""
        self._manual(_DISABLED, "disable()")

    def reset(self) -> None:
        """Close the breaker and forget the window (published when shared)."""
        self._manual(_CLOSED, "reset()")

    def _manual(self, state: BreakerState, reason: str) -> None:
        fired: list[tuple[BreakerTransition, bool]] = []
        with self._lock:
            self._transition(state, self._clock(), reason, fired, publish=True)
            if not fired:  # already there: still clear and announce the operator's intent
                self._window.clear()
                fired.append((self._event(state, state, reason), True))
        self._emit(fired)

    # ----------------------------------------------------------------- admission

    def acquire(self) -> BreakerPermit:
        """Ask to make one call; returns a `BreakerPermit` to report its outcome with.

        Raises `BreakerOpen` (with `retry_after` seconds and wall-clock `retry_at`) when
        the breaker refuses the call. Never blocks, apart from the shared store's read.
        """
        generation = self._generation
        if not self._fast:
            generation = self._admit()
        return BreakerPermit(self, generation, self._clock())

    def _admit(self) -> int:
        """The generation to record the call under, or raise BreakerOpen."""
        now = self._clock()
        if self.shared is not None and now >= self._shared_next_read:
            self._refresh_shared(now)
        fired: list[tuple[BreakerTransition, bool]] = []
        refusal: tuple[BreakerState, float] | None = None
        with self._lock:
            self._apply_timers(now, fired)
            state = self._state
            if state is _CLOSED:
                generation = self._generation
            elif state is _DISABLED:
                generation = _NO_RECORD
            elif state is _HALF_OPEN and self._trials_left > 0:
                self._trials_left -= 1
                generation = self._generation
            else:
                self._not_permitted += 1
                if state is _OPEN:
                    wait = self._open_until - now
                elif state is _HALF_OPEN:
                    left = self._half_open_since + self.half_open_timeout - now
                    wait = min(HALF_OPEN_RETRY_HINT, left)
                else:  # forced open has no end: suggest asking again after open_for
                    wait = self.open_for
                refusal = (state, max(0.0, wait))
        if fired:
            self._emit(fired)
        if refusal is not None:
            state, wait = refusal
            raise BreakerOpen(
                name=self.name,
                state=state,
                retry_after=wait,
                retry_at=self._wall_clock() + wait,
                reason=self._open_reason,
            )
        return generation

    # ----------------------------------------------------------------- blocks

    def __enter__(self) -> BreakerPermit:
        permit = self.acquire()
        self._active.set((*self._active.get(), permit))
        return permit

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        *outer, permit = self._active.get()
        self._active.set(tuple(outer))
        permit.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> BreakerPermit:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # ----------------------------------------------------------------- calls

    def _call_sync(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        generation = self._generation
        if not self._fast:
            generation = self._admit()
        clock = self._clock
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            end = clock()
            self._record(generation, self._classify(error, end - start), end)
            raise
        end = clock()
        self._record(generation, SLOW if end - start >= self.slow_call_duration else 0, end)
        return result

    async def _call_async(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        generation = self._generation
        if not self._fast:
            generation = self._admit()
        clock = self._clock
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            end = clock()
            self._record(generation, self._classify(error, end - start), end)
            raise
        end = clock()
        self._record(generation, SLOW if end - start >= self.slow_call_duration else 0, end)
        return result

    def _classify(self, error: BaseException, duration: float) -> int | None:
        """Outcome code for a call that raised `error`, or None when it is not counted."""
        if not isinstance(error, Exception) or self._ignore_filter(error):
            return None
        slow = SLOW if duration >= self.slow_call_duration else 0
        return FAILED | slow if self._record_filter(error) else slow

    def _record(self, generation: int, code: int | None, now: float) -> None:
        """Count one outcome (None: not counted) of a call admitted under `generation`."""
        lock = self._lock
        lock.acquire()
        try:
            if generation != self._generation:
                return  # admitted in an earlier state, or disabled: its outcome is stale
            state = self._state
            if state is _CLOSED:
                if code is None or not self._window.record(code, now):
                    return
                fired: list[tuple[BreakerTransition, bool]] = []
                self._trip(now, fired)
            elif state is _HALF_OPEN:
                fired = []
                self._record_trial(code, now, fired)
            else:
                return
        finally:
            lock.release()
        self._emit(fired)

    def _trip(self, now: float, fired: list[tuple[BreakerTransition, bool]]) -> None:
        counts = self._window.counts(now)
        if counts.failures / counts.calls >= self.failure_rate:
            why = f"failure rate {counts.failures}/{counts.calls}"
            limit = self.failure_rate
        else:
            why = f"slow-call rate {counts.slow}/{counts.calls}"
            limit = self.slow_call_rate
        self._transition(_OPEN, now, f"{why} >= {limit:g}", fired)

    def _record_trial(
        self, code: int | None, now: float, fired: list[tuple[BreakerTransition, bool]]
    ) -> None:
        if code is None:
            self._trials_left += 1  # an uncounted trial gives its slot back
            return
        self._trials_done += 1
        if code & FAILED:
            self._trial_failures += 1
        if code & SLOW:
            self._trial_slow += 1
        done = self._trials_done
        if done < self.half_open_calls:
            return
        if self._trial_failures / done >= self.failure_rate:
            why = f"{self._trial_failures}/{done} trial calls failed"
            self._transition(_OPEN, now, why, fired)
        elif self._trial_slow / done >= self.slow_call_rate:
            self._transition(_OPEN, now, f"{self._trial_slow}/{done} trial calls slow", fired)
        else:
            why = f"{done - self._trial_failures}/{done} trial calls succeeded"
            self._transition(_CLOSED, now, why, fired)

    # ----------------------------------------------------------------- transitions

    def _apply_timers(self, now: float, fired: list[tuple[BreakerTransition, bool]]) -> None:
        """Under the lock: make the time-driven transitions that are due."""
        if self._state is _OPEN and now >= self._open_until:
            self._transition(_HALF_OPEN, now, f"open for {self.open_for:g}s", fired)
        if (
            self._state is _HALF_OPEN
            and now - self._half_open_since >= self.half_open_timeout
            and self._trials_done < self.half_open_calls
        ):
            why = f"trial calls not all reported within {self.half_open_timeout:g}s"
            self._transition(_OPEN, now, why, fired)

    def _transition(
        self,
        state: BreakerState,
        now: float,
        reason: str,
        fired: list[tuple[BreakerTransition, bool]],
        *,
        publish: bool | None = None,
        open_until: float | None = None,
    ) -> None:
        """Under the lock: enter `state`, if not already there, and note the event."""
        previous = self._state
        if previous is state:
            return
        self._fast = False  # before the generation moves: see _call_sync's lock-free read
        self._state = state
        self._generation += 1
        if state is _OPEN:
            self._open_until = now + self.open_for if open_until is None else open_until
            self._open_reason = reason
        elif state is _HALF_OPEN:
            self._half_open_since = now
            self._trials_left = self.half_open_calls
            self._trials_done = self._trial_failures = self._trial_slow = 0
        elif state is _CLOSED:
            self._window.clear()
            self._open_reason = ""
        elif state is _FORCED_OPEN:
            self._open_reason = "forced open"
        if publish is None:  # half-open is a local probe; everything else is news
            publish = state is not _HALF_OPEN
        fired.append((self._event(previous, state, reason), publish))
        self._fast = state is _CLOSED and self.shared is None

    def _event(self, previous: BreakerState, state: BreakerState, reason: str) -> BreakerTransition:
        event = BreakerTransition(self.name, previous, state, self._wall_clock(), reason)
        self._events.append(event)
        return event

    def _emit(self, fired: list[tuple[BreakerTransition, bool]]) -> None:
        """Outside the lock: log, publish and tell listeners about transitions."""
        for event, publish in fired:
            level = logging.WARNING if event.to_state in (_OPEN, _FORCED_OPEN) else logging.INFO
            log.log(
                level,
                "circuit breaker %r: %s -> %s (%s)",
                self.name,
                event.from_state.value,
                event.to_state.value,
                event.reason,
            )
            if publish and self.shared is not None:
                self._publish(event.to_state)
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("listener of circuit breaker %r failed", self.name)

    # ----------------------------------------------------------------- sharing

    def _publish(self, state: BreakerState) -> None:
        assert self.shared is not None
        with self._lock:
            remaining = self._open_until - self._clock() if state is _OPEN else 0.0
            expected = self._shared_version
        until = self._wall_clock() + remaining if state is _OPEN else 0.0
        try:
            # Compare-and-set; on a lost race, the newer local transition still wins.
            for _ in range(3):
                stored = self.shared.publish(self.name, state.value, until, expected)
                if stored.state == state.value:
                    break
                expected = stored.version
        except Exception:
            log.exception("circuit breaker %r could not publish its state %s", self.name, state)
            return
        with self._lock:
            self._shared_version = max(self._shared_version, stored.version)

    def _refresh_shared(self, now: float) -> None:
        assert self.shared is not None
        self._shared_next_read = now + self.shared_ttl  # first, so racing threads skip the read
        try:
            stored = self.shared.read(self.name)
        except Exception:
            log.exception("circuit breaker %r could not read its shared state", self.name)
            return
        if stored is None or stored.version <= self._shared_version:
            return
        fired: list[tuple[BreakerTransition, bool]] = []
        with self._lock:
            if stored.version > self._shared_version:
                self._adopt(stored, now, fired)
        self._emit(fired)

    def _adopt(
        self, stored: SharedBreakerState, now: float, fired: list[tuple[BreakerTransition, bool]]
    ) -> None:
        """Under the lock: honour a state another process published."""
        self._shared_version = stored.version
        reason = f"shared state v{stored.version}"
        if stored.state == _OPEN.value:
            remaining = stored.until - self._wall_clock()
            if remaining <= 0:
                return  # an open period that is already over
            if self._state in (_CLOSED, _HALF_OPEN):
                self._transition(
                    _OPEN, now, reason, fired, publish=False, open_until=now + remaining
                )
            elif self._state is _OPEN:
                self._open_until = max(self._open_until, now + remaining)
        elif stored.state in (_FORCED_OPEN.value, _DISABLED.value, _CLOSED.value):
            self._transition(BreakerState(stored.state), now, reason, fired, publish=False)
