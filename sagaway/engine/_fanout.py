"""Fan-out of steps: `ctx.map` over a step and `ctx.gather`, on threads of this worker.

The map's execution thread coordinates; up to `concurrency` branch threads take the next
item, make its tries (`_attempts`, with the step's guards) and hand the outcome back. The
coordinator records each outcome at its branch position and writes what it has taken in one
checkpoint while the branches go on: many completions share a write, and a crash loses only
completions not yet written (those branches run again, as an interrupted step does).

A branch refused by its step's breaker, rate limit or bulkhead for more than a moment parks:
its thread goes back to the other items, and the branch is taken again when its refusal
ends. When only parked branches are left, the run rests until the first of them is due.

When failures pass the tolerance, or the run is cancelled, no further branch starts; the
branches under way are awaited (threads cannot be stopped) and recorded before the map
raises `MapFailed` (or the run unwinds): every branch that ran is compensated.
"""

from __future__ import annotations

import heapq
import json
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from sagaway.engine import _serde as serde
from sagaway.engine._attempts import Attempts
from sagaway.engine._branches import (
    DEFAULT_THREADS,
    Call,
    branch_position,
    check_concurrency,
    check_items,
    check_tolerance,
    dry,
    note_failure,
    take_position,
)
from sagaway.engine._checkpoint import RunWriter
from sagaway.engine._children import map_children
from sagaway.engine._control import Abandon, CancelRequested, Suspend
from sagaway.engine._invoke import StepInvoker
from sagaway.engine._parking import INLINE_WAIT, Parking
from sagaway.engine.definitions import SagaDefinition, StepDefinition
from sagaway.errors import ConfigurationError, MapFailed, SerializationError
from sagaway.store.base import EntryStatus, JournalEntry, RunUpdate, Store, Wait
from sagaway.store.messages import NewMessage

if TYPE_CHECKING:
    from sagaway.engine._execution import RunExecution

__all__ = ["gather", "map_items"]

_MISSING: Any = object()
_EXIT = object()  # a branch thread ended


def map_items(
    execution: RunExecution, fn: Any, items: Any, concurrency: Any, tolerated: Any
) -> list[Any]:
    """ctx.map: `fn(item)` for every item, a step on this worker's threads or a saga as
    child runs; the results in input order."""
    name = getattr(fn, "name", None) or getattr(fn, "__name__", repr(fn))
    what = f"ctx.map({name})"
    if not isinstance(fn, (StepDefinition, SagaDefinition)):
        raise ConfigurationError(
            f"{what}: fn must be a step (@app.step) or a saga (@app.saga) of this app, got "
            f"{fn!r}: a plain function or lambda would not be journaled; declare it as a step"
        )
    values = check_items(items, what)
    limit = check_concurrency(concurrency, what)
    tolerance = check_tolerance(tolerated, len(values), what)
    if isinstance(fn, SagaDefinition):
        return map_children(execution, fn, values, limit, tolerance, what)
    _refuse_pivot(fn, what)
    if fn.undo is not None:  # its compensation needs the items: refused at the call
        serde.dumps(values, f"the items of {what}")
    digest = serde.arguments_digest([values], {})
    step: StepDefinition = fn
    fanout = StepFanout(
        execution, "map", fn.name, lambda i: Call(step, (values[i],), {}), len(values),
        min(limit or DEFAULT_THREADS, max(1, len(values))), tolerance, what,
    )  # fmt: skip
    return fanout.execute(digest)


def gather(execution: RunExecution, calls: tuple[Any, ...]) -> list[Any]:
    """ctx.gather: every `step.bind(...)` call at once; the results in the order given.
    Fails as a map that tolerates no failure."""
    what = "ctx.gather"
    for call in calls:
        if not isinstance(call, Call):
            raise ConfigurationError(
                f"{what}: pass step calls made with step.bind(*args), e.g. "
                f"ctx.gather(reserve.bind(cart), authorize.bind(card)); got {call!r}"
            )
        _refuse_pivot(call.step, what)
    digest = serde.arguments_digest([[c.step.name, list(c.args), c.kwargs] for c in calls], {})
    for call in calls:
        if call.step.undo is not None:  # refused at the call, not half-way
            serde.dumps([list(call.args), call.kwargs], f"the arguments of {call.step.name!r}")
    threads = min(DEFAULT_THREADS, max(1, len(calls)))
    fanout = StepFanout(
        execution, "gather", "gather", calls.__getitem__, len(calls), threads, 0, what
    )
    return fanout.execute(digest)


def _refuse_pivot(step: StepDefinition, what: str) -> None:
    if step.pivot:
        raise ConfigurationError(
            f"{what}: step {step.name!r} is a pivot, the one point of no return of a saga; "
            "branches run in any order, so call the pivot on its own, before or after"
        )


class _Tries:
    """The step invoker as one branch uses it: notes that a try of the body began."""

    def __init__(self, invoker: StepInvoker) -> None:
        self.invoker, self.began = invoker, False

    def invoke(self, *args: Any) -> Any:
        self.began = True
        return self.invoker.invoke(*args)


class _SharedWriter:
    """The run's writer as branch threads use it (for events, lease renewals and the first
    write of a park): one caller at a time, the map's own writes included."""

    def __init__(self, writer: RunWriter, lock: threading.Lock) -> None:
        self.writer, self.lock = writer, lock

    @property
    def store(self) -> Store:
        """The run's store (its clock is read without the lock)."""
        return self.writer.store

    def event(self, kind: str, **data: Any) -> None:
        with self.lock:
            self.writer.event(kind, **data)

    def hold_lease(self) -> None:
        if self.writer.lease.ending():
            with self.lock:
                self.writer.hold_lease()

    def flush(self, update: RunUpdate | None = None) -> None:
        with self.lock:
            self.writer.flush(update)


@dataclass(eq=False)
class _Branch:
    """One item between its first try and its recorded outcome."""

    index: int
    attempts: Attempts
    tries: _Tries
    until: float = 0.0  # parked: due again then
    deadline: float | None = None  # parked: fails with the refusal after this
    step: str = ""


@dataclass(eq=False)
class _Outcome:
    """What a branch thread hands back: a recorded `entry` with the `value` the saga sees,
    a park (`entry` None), or an `error` that stops the map (Abandon)."""

    branch: _Branch
    entry: JournalEntry | None = None
    value: Any = None
    error: BaseException | None = None
    published: tuple[NewMessage, ...] = ()  # committed with the branch's completion


@dataclass(eq=False)
class _Progress:
    """Counts of a map, recorded in its marker entry (shown by `runs show`)."""

    items: int
    concurrency: int
    tolerated: int
    done: int = 0
    failed: int = 0
    running: int = 0
    parked: int = 0
    started: int = 0  # the highest index taken, plus one
    failures: dict[int, BaseException] = field(default_factory=dict)

    def text(self) -> str:
        keys = ("items", "concurrency", "tolerated", "done", "failed", "running", "parked")
        return json.dumps({k: getattr(self, k) for k in (*keys, "started")})


class StepFanout:
    """One map or gather of steps, executing at its journal position."""

    def __init__(
        self,
        execution: RunExecution,
        kind: str,
        name: str,
        calls: Callable[[int], Call],
        count: int,
        threads: int,
        tolerated: int,
        what: str,
    ) -> None:
        self.execution, self.kind, self.name, self.calls = execution, kind, name, calls
        self.count, self.threads, self.what = count, threads, what
        self.progress = _Progress(count, threads, tolerated)
        self.results: list[Any] = [_MISSING] * count
        self.lock = threading.Lock()  # the run's writer
        self.state = threading.Lock()  # what the threads share below
        self.todo: deque[int] = deque()
        self.ready: deque[_Branch] = deque()  # parked branches due again
        self.alive = 0
        self.stop = False
        self.outcomes: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.parked: list[tuple[float, int, _Branch]] = []
        self.fatal: BaseException | None = None
        self.cancelled = False
        self.unwritten = False
        self.position = -1
        self.started_at = 0.0  # by the store's clock, once the fan-out runs (not dry)
        self.finishing = False  # only the branches a crash interrupted run (see _replay)
        self.failed = 0  # failures seen by the branch threads (under `state`)

    # --- the coordinator --------------------------------------------------------------------
    def execute(self, digest: str | None) -> list[Any]:
        """Run (or replay) the fan-out; return the results in input order, or raise
        MapFailed past the tolerance."""
        journal = self.execution.journal
        self.position, marker = take_position(journal, self.kind, self.name, digest, self.what)
        self._replay(marker)
        if marker is not None and marker.status != EntryStatus.RUNNING:
            return self._end(marker)
        if dry(self.execution):
            raise Suspend(None, None)
        self.shared = _SharedWriter(self.execution.writer, self.lock)
        self.started_at = self.execution._clock()
        if marker is None:
            self._mark(EntryStatus.RUNNING, digest=digest)
        self.execution._before_effect()  # the marker and all before it durable; cancel stops
        self._loop()
        self._drop_unfinished()
        if self.fatal is not None:
            raise self.fatal
        if self.cancelled:
            raise CancelRequested()
        return self._end(None, digest)

    def _replay(self, marker: JournalEntry | None) -> None:
        """Take the recorded branches; the rest are to do. After a redrive (the failed
        marker deleted) failed branches run again."""
        recorded = self.execution.journal.branches.get(self.position, {})
        redriven = marker is None and bool(recorded)
        progress = self.progress
        for index, entry in recorded.items():
            if index >= self.count or entry.kind != "step":
                continue  # the journal's check below reports the mismatch
            call = self.calls(index)
            self.execution.journal.check_arguments(
                entry, serde.arguments_digest(call.args, call.kwargs)
            )
            if entry.status == EntryStatus.OK:
                self.results[index] = serde.loads(entry.result or "null")
                progress.done += 1
            elif not redriven:
                error = serde.rebuild_error(entry.error) or RuntimeError(entry.error)
                self.results[index] = error
                progress.failures[index] = error
                progress.failed += 1
        todo = [i for i in range(self.count) if self.results[i] is _MISSING]
        if progress.failed > progress.tolerated and marker is not None:
            # Failed past its tolerance before a crash: only the branches that may have
            # been under way then run again (to be recorded, and so compensated).
            started = json.loads(marker.result or "{}").get("started", 0)
            todo = [i for i in todo if i < started + self.threads]
            self.finishing = True
        self.todo = deque(todo)
        self.failed = progress.failed

    def _loop(self) -> None:
        while True:
            if not self.stop:
                self._spawn()
            self._take(block=self.alive > 0)
            self._readmit()
            self._write()
            self._check()
            if self.alive == 0 and self.outcomes.empty():
                if self.stop or not (self.parked or self.ready or self.todo):
                    return
                if not (self.ready or self.todo):  # only parked branches are left
                    wait = self.parked[0][0] - self.execution._clock()
                    if wait > INLINE_WAIT:
                        self._rest()
                    self.execution._pause(max(0.0, wait))

    def _spawn(self) -> None:
        with self.state:
            want = min(self.threads - self.alive, len(self.ready) + len(self.todo))
            want = max(0, want)
            self.alive += want
        for _ in range(want):
            threading.Thread(target=self._work, name="sagaway-branch", daemon=True).start()

    def _take(self, block: bool) -> None:
        """Take the outcomes handed back: wait for one when branches are under way (until
        the first parked branch is due), then take all that are there."""
        items = []
        if block:
            timeout = None
            if self.parked:
                timeout = max(0.0, self.parked[0][0] - self.execution._clock())
            try:
                items.append(self.outcomes.get(timeout=timeout))
            except queue.Empty:
                pass
        while True:
            try:
                items.append(self.outcomes.get_nowait())
            except queue.Empty:
                break
        for item in items:
            if item is not _EXIT:
                self._apply(item)

    def _apply(self, outcome: _Outcome) -> None:
        branch, progress = outcome.branch, self.progress
        if outcome.error is not None:
            self.fatal = self.fatal or outcome.error
            self.stop = True
            return
        if outcome.entry is None:
            heapq.heappush(self.parked, (branch.until, branch.index, branch))
            return
        self._record(outcome.entry, outcome.published)
        self.results[branch.index] = outcome.value
        if outcome.entry.status == EntryStatus.OK:
            progress.done += 1
        else:
            progress.failed += 1
            progress.failures[branch.index] = outcome.value

    def _record(self, entry: JournalEntry, published: tuple[NewMessage, ...] = ()) -> None:
        self.execution.journal.add(entry)
        with self.lock:
            self.execution.writer.publish(published)
            self.execution.writer.record(entry)
        self.unwritten = True

    def _readmit(self) -> None:
        now = self.execution._clock()
        with self.state:
            while self.parked and self.parked[0][0] <= now and not self.stop:
                self.ready.append(heapq.heappop(self.parked)[2])

    def _write(self) -> None:
        """Write the completions taken so far, with the map's counts, in one checkpoint."""
        if not self.unwritten or self.fatal is not None:
            return
        self.unwritten = False
        try:
            self._mark(EntryStatus.RUNNING)
            with self.lock:
                self.execution.writer.flush()
        except BaseException as exc:  # Abandon: the lease was lost or the store failed
            self.fatal, self.stop = exc, True
            return
        if self.execution.writer.cancel_requested and not self.execution.pivot_passed:
            self.cancelled, self.stop = True, True

    def _check(self) -> None:
        progress = self.progress
        if progress.failed > progress.tolerated and not self.finishing:
            self.stop = True
        if self.execution.stopping.is_set() and self.fatal is None:
            self.fatal, self.stop = Abandon(True), True

    def _rest(self) -> None:
        """Every branch left is parked, the first for a while: the run rests until then."""
        until, _, first = self.parked[0]
        deadlines = [b.deadline for _, _, b in self.parked if b.deadline is not None]
        self.progress.parked = len(self.parked)
        self._mark(EntryStatus.RUNNING)
        wait = Wait(f"park:{first.step}", self.position, min(deadlines) if deadlines else None)
        raise Suspend(until, wait, signal=False)

    def _drop_unfinished(self) -> None:
        """The map stopped with branches parked: one whose body ran at least once is
        recorded as failed (so that it is compensated); the others never ran."""
        if self.fatal is not None:
            return  # handed back or lost: they resume where the journal says
        left = [b for _, _, b in self.parked] + list(self.ready)
        self.parked, self.ready = [], deque()
        for branch in sorted(left, key=lambda b: b.index):
            if not branch.tries.began:
                continue
            call = self.calls(branch.index)
            error = RuntimeError(
                f"branch {branch.index} of {self.what} was parked by step {call.step.name!r}'s "
                "breaker, rate limit or bulkhead when the map stopped"
            )
            self._apply(self._failed(branch, call, error, self.execution._clock(), 1))

    def _end(self, marker: JournalEntry | None, digest: str | None = None) -> list[Any]:
        progress = self.progress
        failed = progress.failed > progress.tolerated
        error: MapFailed | None = None
        if failed:
            failures = sorted(progress.failures.items())
            error = MapFailed(self.what, self.count, progress.tolerated, failures)
            record = serde.error_record(
                error, phase="forward", position=self.position, step=self.name
            )
            note_failure(self.execution, error, record)
        if marker is None:
            status = EntryStatus.FAILED if failed else EntryStatus.OK
            self.progress.running = self.progress.parked = 0
            self._mark(status, digest=digest, error=error)
        if error is not None:
            raise error
        return self.results

    def _mark(
        self, status: EntryStatus, digest: str | None = None, error: BaseException | None = None
    ) -> None:
        """Record the map's own entry: `running` with its counts, or how it ended."""
        recorded = self.execution.journal.forward.get(self.position)
        if digest is None and recorded is not None:
            digest = recorded.digest
        now = self.execution._clock()
        self.progress.running = self.alive
        self.progress.parked = len(self.parked)
        text = None
        if error is not None:
            record = serde.error_record(error, phase="forward", position=self.position)
            text = record.to_json()
        entry = JournalEntry.fanout(
            self.position, self.kind, self.name, status, progress=self.progress.text(),
            error=text, started_at=self.started_at, finished_at=now, digest=digest,
        )  # fmt: skip
        self.execution.journal.add(entry)
        with self.lock:
            self.execution.writer.record(entry)

    # --- a branch thread --------------------------------------------------------------------
    def _work(self) -> None:
        try:
            while True:
                with self.state:
                    if self.stop:
                        return
                    if self.ready:
                        branch: _Branch | int = self.ready.popleft()
                    elif self.todo:
                        branch = self.todo.popleft()
                        self.progress.started = max(self.progress.started, branch + 1)
                    else:
                        return
                if isinstance(branch, int):
                    branch = self._branch(branch)
                outcome = self._run(branch)
                if outcome.entry is not None and outcome.entry.status != EntryStatus.OK:
                    with self.state:  # past the tolerance, no further branch starts
                        self.failed += 1
                        if self.failed > self.progress.tolerated and not self.finishing:
                            self.stop = True
                self.outcomes.put(outcome)
        finally:
            with self.state:
                self.alive -= 1
            self.outcomes.put(_EXIT)

    def _branch(self, index: int) -> _Branch:
        execution = self.execution
        call = self.calls(index)
        position = branch_position(self.position, index)
        run = execution.run
        if run.wait_name == f"park:{call.step.name}" and run.wait_position == self.position:
            run = replace(run, wait_position=position)  # parked before a rest: deadline holds
        tries = _Tries(execution.runtime.invoker)
        writer = cast(RunWriter, self.shared)
        parking = Parking(run, writer, execution.runtime.metrics, execution._pause)
        attempts = Attempts(
            run, writer, parking, cast(StepInvoker, tries), execution.runtime.metrics,
            execution._pause, execution.trace,
        )  # fmt: skip
        return _Branch(index, attempts, tries, step=call.step.name)

    def _run(self, branch: _Branch) -> _Outcome:
        call = self.calls(branch.index)
        step = call.step
        position = branch_position(self.position, branch.index)
        started = self.execution._clock()
        try:
            args_text = None
            if step.undo is not None:
                what = f"the arguments of step {step.name!r}"
                args_text = serde.dumps({"args": list(call.args), "kwargs": call.kwargs}, what)
        except SerializationError as exc:
            return self._failed(branch, call, exc, started, 0)
        try:
            outcome = branch.attempts.call(
                step.name, position, step.body, call.args, call.kwargs, guards=step
            )
        except Suspend as rest:  # refused for a while: park, and free this thread
            branch.until = rest.wake_at if rest.wake_at is not None else self.execution._clock()
            branch.deadline = rest.wait.deadline if rest.wait is not None else None
            return _Outcome(branch)
        except BaseException as exc:  # Abandon: the worker stops or the lease was lost
            return _Outcome(branch, error=exc)
        if not outcome.ok:
            assert outcome.error is not None
            return self._failed(branch, call, outcome.error, started, outcome.tries, args_text)
        entry = JournalEntry.step(
            position, step.name, args=args_text, result=outcome.text, attempts=outcome.tries,
            started_at=started, finished_at=self.execution._clock(),
            digest=serde.arguments_digest(call.args, call.kwargs),
        )  # fmt: skip
        return _Outcome(branch, entry, outcome.value, published=outcome.published)

    def _failed(
        self,
        branch: _Branch,
        call: Call,
        error: BaseException,
        started: float,
        tries: int,
        args_text: str | None = None,
    ) -> _Outcome:
        position = branch_position(self.position, branch.index)
        record = serde.error_record(error, phase="forward", position=position, step=call.step.name)
        if args_text is None and call.step.undo is not None:
            try:
                args_text = serde.dumps({"args": list(call.args), "kwargs": call.kwargs}, "")
            except SerializationError:
                args_text = None
        entry = JournalEntry.step(
            position, call.step.name, args=args_text, error=record.to_json(), attempts=tries,
            started_at=started, finished_at=self.execution._clock(),
            digest=serde.arguments_digest(call.args, call.kwargs),
        )  # fmt: skip
        # The saga sees the error as a replay will: rebuilt from what was recorded.
        return _Outcome(branch, entry, serde.rebuild_error(record) or error)
