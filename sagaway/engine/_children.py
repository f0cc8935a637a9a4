"""Fan-out of sagas: `ctx.map` over a saga and `ctx.child` start child runs that any worker
may claim, and the parent rests (holding no thread) until they end.

Each time the parent executes, its map counts its children in the store: it starts more while
fewer than `concurrency` are under way and the failures are within the tolerance, and rests
otherwise; a child that ends makes it due again (`FanoutStore.wake_parent`), and a timer
wakes it should that write be lost. Once every child started has ended, the map records one
branch entry per child (kind `child`) and returns, or raises `MapFailed`.

When the parent unwinds, children still under way are cancelled and awaited, then each child
that succeeded is compensated as a run: it runs its own compensations, in its own reverse
order, while the parent rests; the parent records that compensation when the child ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sagaway._ids import time_ordered_id
from sagaway.engine import _serde as serde
from sagaway.engine._branches import (
    branch_position,
    dry,
    note_failure,
    position_label,
    take_position,
)
from sagaway.engine._control import Abandon, Suspend
from sagaway.engine.definitions import SagaDefinition
from sagaway.engine.run import _OUTCOMES
from sagaway.errors import (
    ConfigurationError,
    LeaseLost,
    MapFailed,
    SagaFailed,
    SagaOutcome,
)
from sagaway.store.base import EntryStatus, ErrorRecord, JournalEntry, NewRun, RunStatus, Wait
from sagaway.store.fanout import CHILD_WAIT, ChildCounts, ChildRun, NewChild

if TYPE_CHECKING:
    from sagaway.engine._execution import RunExecution
    from sagaway.engine._runtime import Runtime

log = logging.getLogger("sagaway")

__all__ = ["ChildUnwinding", "child_ended", "map_children", "run_child"]

# A parent resting on its children looks again after this long even if no child woke it
# (the wake-up is a write of its own, after the child's last one, and may be lost).
CHILD_POLL = 10.0
# Children inserted per transaction when a map starts many at once.
_BATCH = 1000


def map_children(
    execution: RunExecution,
    saga: SagaDefinition,
    items: list[Any],
    concurrency: int | None,
    tolerated: int,
    what: str,
) -> list[Any]:
    """ctx.map over a saga: one child run per item, `saga(ctx, item)`."""
    digest = serde.arguments_digest([items], {})
    if digest is None:
        serde.dumps(items, f"the items of {what}")  # raises, naming what cannot be stored
    if items:
        saga.identity([items[0]], {})  # a saga that does not take one argument: refused now
    fanout = ChildFanout(
        execution, saga, len(items), lambda i: ((items[i],), {}), None,
        concurrency or max(1, len(items)), tolerated, what, single=False,
    )  # fmt: skip
    return fanout.execute(digest)


def run_child(
    execution: RunExecution,
    saga: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: str | None,
) -> Any:
    """ctx.child: one child run of `saga(ctx, *args, **kwargs)`; its result, or its outcome
    (SagaCompensated, SagaFailed, SagaCancelled) raised."""
    name = getattr(saga, "name", None) or getattr(saga, "__name__", repr(saga))
    what = f"ctx.child({name})"
    if not isinstance(saga, SagaDefinition):
        raise ConfigurationError(
            f"{what}: pass a saga of this app (@app.saga), got {saga!r}; a step is called "
            "directly, several at once with ctx.gather"
        )
    if key is not None and not isinstance(key, str):
        raise ConfigurationError(f"{what}: key must be a str, got {type(key).__name__}")
    saga.identity(args, kwargs)  # arguments that do not fit: InvalidInput, now
    digest = serde.arguments_digest([saga.name, list(args), kwargs, key], {})
    if digest is None:
        serde.dumps([list(args), kwargs], f"the input of {what}")
    fanout = ChildFanout(execution, saga, 1, lambda _: (args, kwargs), key, 1, 0, what, single=True)
    return fanout.execute(digest)[0]


def child_ended(runtime: Runtime, parent_id: str) -> None:
    """A child run ended: its parent, resting until its children end, is due now. Should
    this write be lost, the parent's own timer (`CHILD_POLL`) wakes it a little later."""
    try:
        runtime.store.wake_parent(parent_id, runtime.store.now())
    except Exception as exc:
        log.warning("could not wake run %s after a child of it ended: %r", parent_id, exc)
    runtime.wake()


def child_outcome(run_id: str, status: str, error: str | None) -> SagaOutcome:
    """The error a child run's end means to its parent, as `Run.result()` raises it."""
    cls = _OUTCOMES.get(status, SagaFailed)
    return cls(run_id, serde.rebuild_error(error) if error else None)


def child_entry(child: ChildRun) -> tuple[JournalEntry, Any]:
    """The branch entry of an ended child, and what its parent's map holds for it."""
    run = child.run
    ok = run.status == RunStatus.SUCCEEDED
    entry = JournalEntry.child(
        branch_position(child.position, child.index), run.saga, ok=ok,
        ref=json.dumps({"run": run.id, "status": str(run.status)}),
        result=run.result if ok else None, error=None if ok else run.error,
        started_at=run.created_at, finished_at=run.updated_at,
    )  # fmt: skip
    return entry, _branch_value(entry)


def _branch_value(entry: JournalEntry) -> Any:
    if entry.status == EntryStatus.OK:
        return serde.loads(entry.result or "null")
    ref = json.loads(entry.args or "{}")
    return child_outcome(ref.get("run", "?"), ref.get("status", "failed"), entry.error)


class ChildFanout:
    """One map over a saga (or one ctx.child) at its journal position."""

    def __init__(
        self,
        execution: RunExecution,
        saga: SagaDefinition,
        count: int,
        inputs: Callable[[int], tuple[tuple[Any, ...], dict[str, Any]]],
        key: str | None,
        concurrency: int,
        tolerated: int,
        what: str,
        single: bool,
    ) -> None:
        self.execution, self.saga, self.count, self.inputs = execution, saga, count, inputs
        self.key, self.concurrency, self.tolerated, self.what = key, concurrency, tolerated, what
        self.single = single  # ctx.child: raises the child's outcome, not MapFailed
        self.run = execution.run
        self.position = -1

    def execute(self, digest: str | None) -> list[Any]:
        journal = self.execution.journal
        self.position, marker = take_position(
            journal, "children", self.saga.name, digest, self.what
        )
        if marker is not None and marker.status != EntryStatus.RUNNING:
            recorded = journal.branches.get(self.position, {})
            return self._end([recorded.get(i) for i in range(self.count)], final=False)
        if dry(self.execution):
            raise Suspend(None, None)
        self.store = self.execution.runtime.store
        counts = self._counts()
        if marker is None:
            if counts.created:  # redriven: the failed map's entry was deleted
                self._redrive_failed()
                counts = self._counts()
            self._mark(EntryStatus.RUNNING, digest)
        if counts.failed > self.tolerated or counts.created >= self.count:
            if counts.active:
                self._rest()
            return self._finish()
        free = min(self.concurrency - counts.active, self.count - counts.created)
        if free > 0:
            self.execution._before_effect()  # the marker durable; a cancel stops here
            self._start(counts.created, counts.created + free)
        self._rest()
        raise AssertionError("unreachable")

    def _counts(self) -> ChildCounts:
        counts: ChildCounts = self._ask(self.store.child_counts, self.run.id, self.position)
        return counts

    def _ask(self, call: Callable[..., Any], *args: Any) -> Any:
        return ask(self.execution, call, *args)

    def _start(self, first: int, end: int) -> None:
        now = self.store.now()
        for low in range(first, end, _BATCH):
            batch = [NewChild(self._new_run(i, now), i) for i in range(low, min(end, low + _BATCH))]
            self._ask(self.store.create_children, self.run.id, self.position, batch)
        self.execution.runtime.wake()
        if self.key is not None and self._counts().created == 0:
            raise ConfigurationError(
                f"{self.what}: key {self.key!r} is already used by a run of saga "
                f"{self.saga.name!r} that is not a child of run {self.run.id}: give each "
                "child a key of its own, e.g. f'invoice-{ctx.run_id}'"
            )

    def _new_run(self, index: int, now: float) -> NewRun:
        args, kwargs = self.inputs(index)
        what = f"the input of saga {self.saga.name!r}"
        identity = self.saga.identity(args, kwargs)
        text = serde.dumps({"args": list(args), "kwargs": kwargs}, what, canonical=True)
        digest = serde.input_hash(serde.dumps(identity, what, canonical=True))
        key = self.key or f"{self.run.id}/{position_label(branch_position(self.position, index))}"
        trace = self.execution.trace.context()  # a child joins its parent's trace
        run_id = time_ordered_id()
        flow = self.saga.flow_control(text)
        return NewRun(
            run_id, self.saga.name, key, text, digest, now, trace_context=trace, flow=flow
        )

    def _redrive_failed(self) -> None:
        """The parent was redriven past this map: children that ended `failed` are redriven
        too (those compensated or cancelled stay failed branches)."""
        now = self.store.now()
        failed = self._ask(self.store.children, self.run.id, self.position, RunStatus.FAILED)
        for child in failed:
            self._ask(redrive_run, self.store, child.run, now)

    def _rest(self) -> None:
        """Rest until a child ends (or the timer: a lost wake-up costs that much)."""
        wait = Wait(f"{CHILD_WAIT}{self.position}", self.position, None)
        raise Suspend(self.store.now() + CHILD_POLL, wait)

    def _finish(self) -> list[Any]:
        entries: list[JournalEntry | None] = [None] * self.count
        for child in self._ask(self.store.children, self.run.id, self.position):
            if child.index < self.count:
                entry, _ = child_entry(child)
                entries[child.index] = entry
                self._record(entry)
        return self._end(entries, final=True)

    def _end(self, entries: list[JournalEntry | None], final: bool) -> list[Any]:
        results: list[Any] = []
        failures: list[tuple[int, BaseException]] = []
        for index, entry in enumerate(entries):
            if entry is None:  # not started: the map stopped past its tolerance
                value: Any = RuntimeError(
                    f"item {index} of {self.what} was not started: the map failed first"
                )
            else:
                value = _branch_value(entry)
            if entry is not None and entry.status != EntryStatus.OK:
                failures.append((index, value))
            results.append(value)
        started = [e for e in entries if e is not None]
        failed = len(started) - sum(e.status == EntryStatus.OK for e in started)
        error: BaseException | None = None
        if failed > self.tolerated:
            if self.single:
                error = failures[0][1]
            else:
                error = MapFailed(self.what, self.count, self.tolerated, failures)
            record = serde.error_record(
                error, phase="forward", position=self.position, step=self.saga.name
            )
            note_failure(self.execution, error, record)
        if final:
            status = EntryStatus.FAILED if error is not None else EntryStatus.OK
            self._mark(status, None, error)
        if error is not None:
            raise error
        return results

    def _mark(
        self, status: EntryStatus, digest: str | None, error: BaseException | None = None
    ) -> None:
        recorded = self.execution.journal.forward.get(self.position)
        if recorded is not None and digest is None:
            digest = recorded.digest
        started = recorded.started_at if recorded is not None else self.store.now()
        progress = json.dumps(
            {"items": self.count, "concurrency": self.concurrency, "tolerated": self.tolerated}
        )
        text = None
        if error is not None:
            text = serde.error_record(error, phase="forward", position=self.position).to_json()
        self._record(
            JournalEntry.fanout(
                self.position, "children", self.saga.name, status, progress=progress,
                error=text, started_at=started, finished_at=self.store.now(), digest=digest,
            )
        )  # fmt: skip

    def _record(self, entry: JournalEntry) -> None:
        self.execution.journal.add(entry)
        self.execution.writer.record(entry)


def ask(execution: RunExecution, call: Callable[..., Any], *args: Any) -> Any:
    """A call of the store: its failure is not the saga's, the run is handed back."""
    try:
        return call(*args)
    except Exception as exc:
        raise execution.writer.store_failed(exc) from exc


def redrive_run(store: Any, run: Any, now: float) -> None:
    """Redrive a failed run as `App.redrive` does: the compensation that gave up, or the
    forward step that failed."""
    recorded = ErrorRecord.from_json(run.error)
    if recorded is not None and recorded.phase == "compensation":
        store.redrive(run.id, now, RunStatus.COMPENSATING, None)
    else:
        store.redrive(run.id, now, RunStatus.PENDING, recorded.position if recorded else None)


class ChildUnwinding:
    """The child runs of an unwinding run: cancelled and awaited while under way, recorded
    when ended, and each that succeeded compensated as a run."""

    def __init__(self, execution: RunExecution) -> None:
        self.execution = execution

    def settle(self) -> None:
        """Before any compensation: children still under way are asked to cancel and the
        run rests until they end; ended children not yet in the journal are recorded."""
        execution = self.execution
        journal = execution.journal
        if not any(e.kind == "children" for e in journal.forward.values()):
            return  # this run never started a child
        store, run = execution.runtime.store, execution.run
        children = ask(execution, store.children, run.id)
        if any(not child.run.status.is_terminal for child in children):
            ask(execution, store.cancel_children, run.id, store.now())
            self._rest()
        for child in children:
            if child.index not in journal.branches.get(child.position, {}):
                entry, _ = child_entry(child)
                journal.add(entry)
                execution.writer.record(entry)

    def compensate(self, entry: JournalEntry) -> tuple[str | None, BaseException | None]:
        """Compensate the child run a succeeded branch names: ask it to compensate and rest
        until it ended. Returns (what to record, None) once it is compensated, or (None,
        error) when it failed and a person must look."""
        execution = self.execution
        if execution.stopping.is_set():
            raise Abandon(True)
        store = execution.runtime.store
        child_id = json.loads(entry.args or "{}").get("run", "")
        child = ask(execution, store.get_run, child_id)
        if child is None:
            return None, RuntimeError(
                f"child run {child_id} no longer exists (was it pruned?): undo what it did by "
                "hand, then `redrive` this run"
            )
        done = json.dumps({"run": child.id, "status": str(child.status)})
        if child.status == RunStatus.SUCCEEDED:
            if child.pivot_passed:
                execution.writer.event("child_past_pivot", run=child.id, step=entry.name)
                return json.dumps({"run": child.id, "status": "succeeded", "pivot": True}), None
            execution.writer.before_effect()
            reason = ConfigurationError(  # the reason recorded on the child, not raised
                f"run {execution.run.id}, its parent, is unwinding: the child is compensated"
            )
            text = serde.error_record(reason, phase="forward").to_json()
            ask(execution, store.compensate_run, child.id, store.now(), text)
            self._rest()
        if child.status in (RunStatus.COMPENSATED, RunStatus.CANCELLED):
            return done, None
        if child.status == RunStatus.FAILED:
            earlier = execution.journal.undone.get(entry.position)
            if earlier is not None and earlier.finished_at > child.updated_at:
                # This run gave up on the child before and was redriven since: so is the child.
                ask(execution, redrive_run, store, child, store.now())
                self._rest()
            return None, child_outcome(child.id, child.status, child.error)
        self._rest()  # under way: compensating
        raise AssertionError("unreachable")

    def _rest(self) -> None:
        """The unwinding waits for children: the run rests `compensating`, holding no
        thread, until a child ends (or the timer)."""
        execution = self.execution
        writer = execution.writer
        writer.flush()
        now = execution.runtime.store.now()
        wait = Wait(f"{CHILD_WAIT}undo", 0, None)
        try:
            execution.runtime.store.rest_unwinding(
                writer.run_id, writer.epoch, now, now + CHILD_POLL, wait
            )
        except LeaseLost:
            raise Abandon(False, why="another worker took it over (lease lost)") from None
        except Exception as exc:
            raise writer.store_failed(exc) from exc
        execution.runtime.metrics.suspended(execution.run.saga)
        raise Abandon(False)
