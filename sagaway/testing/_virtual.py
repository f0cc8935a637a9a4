"""Virtual time: the timers, waits, backoffs and leases of an App's runs on a clock that a
test moves, so that an hour of a saga's life takes milliseconds.

`virtual_time(app)` replaces the host's wall clock that a SQLite store reads
(`sagaway._clock.wall`), the App's store's clock (a PostgreSQL store's is the server's) and
the pause an execution takes in its thread (`_clock.pause`: a retry's backoff, a short
sleep) by a `VirtualClock`, and puts the clock in charge of executing the App's runs: in the
calling thread, one at a time, when the test advances the clock or awaits a result. While a
test waits for `run.result()`, time skips to the next moment something is due whenever
nothing is due now (Temporal's time-skipping test environment does the same). Everything
is put back on exit.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sagaway import _clock
from sagaway.engine._execution import RunExecution
from sagaway.engine._runtime import Runtime
from sagaway.engine.app import App
from sagaway.engine.run import Run
from sagaway.errors import ConfigurationError, RunStuck
from sagaway.store.base import TERMINAL, RunRecord, RunStatus

__all__ = ["VirtualClock", "virtual_time"]

# Executions at one virtual instant: beyond this, runs keep making themselves or each other
# due at once (a loop that would never let time move on).
MAX_EXECUTIONS = 10_000


class VirtualClock:
    """The clock of an App's runs under `virtual_time`: it moves only when the test advances
    it, or, while the test awaits `run.result()`, to the next moment something is due.

    Calling it reads it (seconds since the epoch), so it can also be the `clock` of a
    `CircuitBreaker` or `RateLimiter` that should follow the same time."""

    def __init__(self, app: App, start: float) -> None:
        self._app = app
        self._start = self._now = float(start)
        self._lock = threading.Lock()
        self._owner = f"virtual-clock:{secrets.token_hex(4)}"
        self._stopping = threading.Event()  # never set: nothing stops a virtual execution
        self._runtime: Runtime | None = None
        self._at_this_instant = 0  # executions since time last moved
        self.executions = 0
        """Executions of runs this clock made (a run's start, each wake-up, each recovery)."""

    def __call__(self) -> float:
        return self._now

    @property
    def elapsed(self) -> float:
        """Virtual seconds since `virtual_time` began."""
        return self._now - self._start

    def advance(self, seconds: float = 0.0) -> None:
        """Let `seconds` of virtual time pass: every run due meanwhile executes when it is
        due (timers fire, waits time out, backoffs end, expired leases are taken over).
        `advance()` alone executes what is due now, e.g. runs just started or signalled."""
        if not seconds >= 0:
            raise ConfigurationError(
                f"clock.advance({seconds!r}): give the seconds to let pass, 0 or more "
                "(virtual time only moves forward)"
            )
        target = self._now + seconds
        store = self._app.store
        while True:
            self._execute_due()
            due = store.next_due()
            if due is None or due > target or due <= self._now:
                break  # (due but not claimable: nothing will change by waiting here)
            self._move_to(due)
        self._move_to(target)
        self._execute_due()

    # --- the engine's hooks ------------------------------------------------------------------
    def _pause(self, stopping: threading.Event, seconds: float) -> bool:
        """An execution lets `seconds` pass in its thread: they pass at once."""
        self._move_to(self._now + max(0.0, seconds))
        return stopping.is_set()

    def _result(self, run: Run, timeout: float | None) -> Any:
        """`run.result()`: execute due runs, skipping time whenever nothing is due now, until
        the run ends. `timeout` bounds the real seconds this takes."""
        self.run_until(lambda: run.refresh().status in TERMINAL, timeout, run=run)
        record = run.record
        return run._outcome(record.status, record.result, record.error)

    # --- driving -------------------------------------------------------------------------------
    def run_until(
        self,
        condition: Callable[[], bool],
        timeout: float | None = None,
        *,
        run: Run | None = None,
    ) -> None:
        """Execute due runs, skipping time whenever nothing is due now, until `condition()`
        is true (e.g. `lambda: run.status == "waiting"`). Raises RunStuck when nothing is due
        any more (naming what `run`, if given, waits for), or TimeoutError after `timeout`
        real seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        store = self._app.store
        idle = 0
        while not condition():
            if self._execute_one():
                idle = 0
            else:
                due = store.next_due()
                if due is None or (due <= self._now and idle > 0):
                    raise RunStuck(_stuck(run.refresh() if run is not None else None))
                idle += 1
                self._move_to(due)
            if deadline is not None and time.monotonic() > deadline:
                what = f"run {run.id}" if run is not None else "the runs"
                raise TimeoutError(
                    f"{what} did not end within {timeout} s of real time under virtual time "
                    f"({self.elapsed:.0f} virtual seconds passed)"
                )

    def _execute_due(self) -> None:
        while self._execute_one():
            pass

    def _execute_one(self) -> bool:
        """Claim one run due now and execute it in this thread; False if none is due."""
        app = self._app
        if app.worker is not None:
            raise ConfigurationError(
                "the App runs a worker inside virtual_time: the virtual clock executes the "
                "runs itself; leave out `with app:` / app.launch() there"
            )
        if self._runtime is None:
            self._runtime = app._runtime()
        now = self._now
        claims = app.store.claim(self._owner, 1, now, now + app.lease, True)
        if not claims:
            return False
        self._at_this_instant += 1
        if self._at_this_instant > MAX_EXECUTIONS:
            raise RunStuck(
                f"{MAX_EXECUTIONS} executions at one virtual instant: a run keeps being handed "
                "back due at once (see the log for why)"
            )
        completion = self._runtime.completions.executing(claims[0])
        completion.take()
        execution = RunExecution(self._runtime, claims[0], app.lease, self._stopping)
        execution.execute(completion)
        self.executions += 1
        return True

    def _move_to(self, moment: float) -> None:
        with self._lock:
            if moment > self._now:
                self._now = moment
                self._at_this_instant = 0


def _stuck(record: RunRecord | None) -> str:
    if record is None:
        return "nothing is due under virtual time and the runs have not ended"
    what = f"run {record.id} of saga {record.saga!r} is {record.status}"
    if record.status == RunStatus.WAITING and record.wait_name is not None:
        what += f", waiting for signal {record.wait_name!r} with no timeout,"
        fix = (
            f"send it first (app.signal(run.id, {record.wait_name!r}, ...)) or give the "
            "wait a timeout"
        )
    else:
        fix = "start or signal what it waits for first"
    return f"{what} and no timer of any run is due: it would never end; {fix}"


@contextmanager
def virtual_time(app: App, start: float | None = None) -> Iterator[VirtualClock]:
    """Run `app`'s sagas on a `VirtualClock` starting at `start` (default: now) for the
    length of the block; yields the clock.

    Inside, runs execute in the test's thread when the clock is advanced
    (`clock.advance(seconds)`) or a result is awaited (`run.result()`, which skips time
    while nothing is due). The App must not run a worker (no `with app:`). On PostgreSQL, the
    App's store object reads the virtual clock, other processes keep the server's: run no
    worker elsewhere on that database meanwhile. One virtual clock at a time per process;
    the real clocks are back after the block.
    """
    if app.worker is not None:
        raise ConfigurationError(
            "virtual_time(app) with the App's worker running: the virtual clock executes the "
            "runs itself; enter virtual_time before `with app:`, or leave `with app:` out"
        )
    if isinstance(_clock.wall, VirtualClock):
        raise ConfigurationError(
            "virtual_time inside virtual_time: one virtual clock at a time per process "
            "(it replaces the process's wall clock); use the clock already yielded"
        )
    store = app.store
    clock = VirtualClock(app, time.time() if start is None else start)
    saved = (_clock.wall, _clock.pause)
    _clock.wall, _clock.pause = clock, clock._pause
    # A PostgreSQL store's clock is the server's: this store object reads the virtual one
    # instead (every statement takes its time from the caller, none reads the server's).
    store.__dict__["now"] = clock
    app._drive_result = clock._result
    try:
        yield clock
    finally:
        _clock.wall, _clock.pause = saved
        store.__dict__.pop("now", None)
        app._drive_result = None
