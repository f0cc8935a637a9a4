"""Crash-point enumeration: a saga run once per place its process could die, recovered, and
judged by the user's invariant.

The places (`engine._crashpoints`): after each write of an execution committed, and after
each try of a step or compensation body, before its outcome is recorded. For crash point
`i`, a fresh SQLite store (a copy of one migrated once) gets a run of the saga; the App
executing it stops dead at the `i`-th place it passes — no further write, its lease left to
run out — and a second App on the same file, a new process as far as the store can tell,
takes the run over once the lease expired (on virtual time: at once) and lets it finish.
The invariant then looks at the run and at the user's state, which `setup` made afresh for
this point. When the run passes fewer than `i + 1` places, it ran without a crash: that last
run is the baseline, judged as well, and the enumeration ends.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagaway.engine import _crashpoints as crashpoints
from sagaway.engine._control import Abandon
from sagaway.engine._parking import parked_step
from sagaway.engine.app import App
from sagaway.engine.definitions import SagaDefinition
from sagaway.engine.run import Run
from sagaway.errors import ConfigurationError, InvariantViolated, RunStuck, SagaOutcome
from sagaway.store import open_store
from sagaway.store.base import (
    COMPENSATION,
    TERMINAL,
    Checkpoint,
    EntryStatus,
    JournalEntry,
    RunStatus,
    RunUpdate,
    Wait,
)
from sagaway.store.fanout import CHILD_WAIT
from sagaway.testing._virtual import virtual_time

__all__ = ["CrashPoint", "Exploration", "explore"]

NO_CRASH = "no crash"


@dataclass(frozen=True)
class CrashPoint:
    """One crash point explored: `index` in the order a run passes them (-1: the baseline
    run without a crash), what happened there (`description`), the run's status once
    recovered (`status`), and what the invariant said (`violation`, None when it held)."""

    index: int
    description: str
    status: str
    violation: str | None = None

    @property
    def held(self) -> bool:
        """The invariant held after this crash."""
        return self.violation is None


@dataclass(frozen=True)
class Exploration:
    """Every crash point of saga `saga` explored, in order, then the `baseline` run."""

    saga: str
    points: tuple[CrashPoint, ...]
    baseline: CrashPoint

    @property
    def violations(self) -> list[CrashPoint]:
        """The crash points (baseline included) after which the invariant did not hold."""
        return [p for p in (*self.points, self.baseline) if not p.held]

    @property
    def ok(self) -> bool:
        """The invariant held after every crash point and without a crash."""
        return not self.violations

    def __str__(self) -> str:
        lines = [f"saga {self.saga!r}: {len(self.points)} crash point(s) explored"]
        for point in (*self.points, self.baseline):
            verdict = "ok" if point.held else f"VIOLATED: {point.violation}"
            label = "--" if point.index < 0 else f"{point.index:2d}"
            lines.append(f"  {label} {point.description} -> {point.status}: {verdict}")
        return "\n".join(lines)


def explore(
    saga: SagaDefinition | str,
    args: Sequence[Any],
    invariant: Callable[[Run, Any], object],
    *,
    app: App,
    kwargs: Mapping[str, Any] | None = None,
    setup: Callable[[], Any] | None = None,
    signals: Mapping[str, Any] | None = None,
    raise_on_violation: bool = True,
    max_points: int = 1000,
) -> Exploration:
    """Run `saga(*args, **kwargs)` of `app` once per crash point, crashing there and
    recovering, and check `invariant(run, state)` after each recovered run ended.

    `setup()` is called before each run; it resets the user's external state (fake
    payment providers, stock) and returns it as `state` (None without setup). `signals`
    (name: payload) are sent right after the start. The invariant fails by raising
    (an `assert`) or returning False. Returns the `Exploration`; with `raise_on_violation`
    (the default), raises InvariantViolated naming the first crash point that broke the
    invariant, so that a test fails with that description.
    """
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise ConfigurationError(
            f"explore(..., args={args!r}): give the saga's arguments as a tuple, e.g. (cart,)"
        )
    name = saga.name if isinstance(saga, SagaDefinition) else saga
    app._saga_name(name)  # raises UnknownSaga for a saga the App does not declare
    run = _PointRunner(app, name, tuple(args), dict(kwargs or {}), setup, dict(signals or {}))
    points: list[CrashPoint] = []
    with tempfile.TemporaryDirectory(prefix="sagaway-explore-") as folder:
        run.prepare(Path(folder))
        for index in range(max_points + 1):
            point = run.point(index, invariant)
            if point.index < 0:
                exploration = Exploration(name, tuple(points), point)
                break
            points.append(point)
        else:
            raise ConfigurationError(
                f"saga {name!r} passed more than {max_points} crash points in one run: raise "
                "explore(max_points=...) or explore a shorter run"
            )
    violations = exploration.violations
    if raise_on_violation and violations:
        first = violations[0]
        more = f" ({len(violations) - 1} more crash point(s) broke it too)" * (len(violations) > 1)
        raise InvariantViolated(
            f"saga {name!r}: {first.description} (crash point {first.index}), the run "
            f"ended {first.status} and the invariant does not hold: {first.violation}"
            f"{more}\n{exploration}",
            first,
            exploration,
        )
    return exploration


class _PointRunner:
    """Runs the saga for one crash point after another, each on a copy of one fresh store."""

    def __init__(
        self,
        app: App,
        saga: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        setup: Callable[[], Any] | None,
        signals: dict[str, Any],
    ) -> None:
        self.app, self.saga, self.args, self.kwargs = app, saga, args, kwargs
        self.setup, self.signals = setup, signals
        self.folder = Path()
        self.template = Path()

    def prepare(self, folder: Path) -> None:
        """Create and migrate the store once; each point starts from a copy of it."""
        self.folder, self.template = folder, folder / "template.db"
        open_store(f"sqlite:///{self.template}").close()

    def point(self, index: int, invariant: Callable[[Run, Any], object]) -> CrashPoint:
        """Crash at the `index`-th crash point (if the run passes that many), recover and
        judge; a run that passes fewer is the baseline (index -1)."""
        path = self.folder / f"point-{index}.db"
        shutil.copyfile(self.template, path)
        url = f"sqlite:///{path}?synchronous=NORMAL"  # a scratch copy: no need to fsync
        state = self.setup() if self.setup is not None else None
        probe = _Probe(self.saga, index)
        first = self._app(url)
        try:
            with virtual_time(first) as clock:
                run = first.start(self.saga, *self.args, **self.kwargs)
                for signal, payload in self.signals.items():
                    first.signal(run.id, signal, payload)
                crashpoints.probe = probe
                try:
                    clock.run_until(lambda: probe.crashed is not None or _ended(first, run.id))
                except RunStuck:
                    pass  # it passed every crash point it can: judged as the baseline below
                finally:
                    crashpoints.probe = None
                moment = clock()
        finally:
            first.close()  # the process that crashed is gone: nothing of it writes again
        second = self._app(url)
        try:
            with virtual_time(second, start=moment):
                recovered = second.get(run.id)
                violation = _judge(recovered, state, invariant)
                status = recovered.refresh().status
        finally:
            second.close()
            for leftover in self.folder.glob(f"{path.name}*"):  # the file, its WAL and index
                leftover.unlink()
        if probe.crashed is None:
            return CrashPoint(-1, NO_CRASH, status, violation)
        return CrashPoint(index, probe.crashed, status, violation)

    def _app(self, url: str) -> App:
        """An App on `url` declaring what the user's App declares."""
        user = self.app
        fresh = App(
            url,
            lease=user.lease,
            retry=user.default_retry,
            compensation_retry=user.compensation_retry,
            record_metrics=False,
        )
        fresh.sagas.update(user.sagas)
        fresh.steps.update(user.steps)
        return fresh


def _ended(app: App, run_id: str) -> bool:
    record = app.store.get_run(run_id)
    return record is not None and record.status in TERMINAL


def _judge(run: Run, state: Any, invariant: Callable[[Run, Any], object]) -> str | None:
    """Let the recovered run end, then ask the invariant; what it objected to, or None."""
    try:
        run.result()
    except SagaOutcome:
        pass  # compensated, failed or cancelled: the invariant says whether that is right
    except RunStuck as exc:
        return f"the run never ended after recovery: {exc}"
    try:
        verdict = invariant(run, state)
    except AssertionError as exc:
        return str(exc) or "the invariant's assertion failed"
    except Exception as exc:
        return f"the invariant raised {type(exc).__name__}: {exc}"
    if verdict is False:
        return "the invariant returned False"
    return None


class _Probe:
    """Counts the crash points the executing thread passes and stops it dead at one."""

    def __init__(self, saga: str, crash_at: int) -> None:
        self.saga, self.crash_at = saga, crash_at
        self.passed = 0
        self.crashed: str | None = None
        # Only the thread executing runs dies: a fan-out's branch threads are awaited by it.
        self.thread = threading.get_ident()

    def after_write(self, saga: str, checkpoint: Checkpoint) -> None:
        if self._here():
            self._crash(saga, f"the write that recorded {_written(checkpoint)}")

    def after_try(self, saga: str, step: str, attempt: int, compensating: bool, ok: bool) -> None:
        if self._here():
            what = f"the compensation of step {step!r}" if compensating else f"step {step!r}"
            if ok:
                told = f"{what} ran but before its completion was recorded (attempt {attempt})"
            else:
                told = f"{what} failed (attempt {attempt}) but before its failure was recorded"
            self._crash(saga, told)

    def _here(self) -> bool:
        if self.crashed is not None or threading.get_ident() != self.thread:
            return False
        self.passed += 1
        return self.passed - 1 == self.crash_at

    def _crash(self, saga: str, what: str) -> None:
        where = "" if saga == self.saga else f" in a run of saga {saga!r}"
        self.crashed = f"crash after {what}{where}"
        raise Abandon(False)  # the execution ends here and writes nothing more


def _written(checkpoint: Checkpoint) -> str:
    """What a committed checkpoint recorded, in words ("step 'charge' done and the run
    succeeded"); a fan-out's branches written together are counted ("step 'sync' done x3")."""
    counts: dict[str, int] = {}
    for entry in checkpoint.entries:
        words = _entry_words(entry)
        counts[words] = counts.get(words, 0) + 1
    parts = [words if n == 1 else f"{words} x{n}" for words, n in counts.items()]
    update = checkpoint.update
    if update is not None and isinstance(update.status, RunStatus):
        parts.append(_status_words(update))
    if not parts:
        parts.append("events" if checkpoint.events else "a lease renewal")
    return " and ".join(parts)


def _entry_words(entry: JournalEntry) -> str:
    status = {EntryStatus.OK: "done", EntryStatus.RUNNING: "under way"}.get(
        entry.status, str(entry.status)
    )
    if entry.phase == COMPENSATION:
        return f"the compensation of step {entry.name!r} {status}"
    if entry.kind == "wait":
        if entry.status == EntryStatus.OK:
            return f"signal {entry.name!r} taken"
        return f"the wait for signal {entry.name!r} timed out"
    if entry.kind == "sleep":
        return "a timer"
    if entry.kind == "now":
        return "a clock reading"
    if entry.kind == "publish":
        return f"a message to {entry.name!r}"
    if entry.kind == "child":
        return f"a child run of saga {entry.name!r} {status}"
    return f"{entry.kind} {entry.name!r} {status}"  # a step, map, gather, children, patch


def _status_words(update: RunUpdate) -> str:
    wait = update.wait
    if update.status != RunStatus.WAITING:
        return f"the run {update.status}"
    if not isinstance(wait, Wait):
        return "the run sleeping"
    if wait.name.startswith(CHILD_WAIT):
        return "the run waiting for its child runs"
    step = parked_step(wait.name)
    if step is not None:
        return f"the run parked at step {step!r}"
    return f"the run waiting for signal {wait.name!r}"
