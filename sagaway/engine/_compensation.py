"""Compensation: when a saga fails before its pivot (or is cancelled), every recorded step
with a compensation is undone, newest first — the failed step included, with `result=None`,
since a failed remote call may still have taken effect. Each compensation is retried; each
completion is written before the next one runs. One that exhausts its retries stops the
unwinding: the run ends `failed` with an escalation, and `redrive` resumes at that step."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sagaway.engine import _serde as serde
from sagaway.engine._attempts import Attempts, Body
from sagaway.engine._branches import CHILD, newest_first
from sagaway.engine._checkpoint import RunWriter
from sagaway.engine._control import Abandon
from sagaway.engine._replay import JournalCursor
from sagaway.engine.metrics import EngineMetrics
from sagaway.store.base import EntryStatus, ErrorRecord, JournalEntry, RunStatus, RunUpdate

if TYPE_CHECKING:
    from sagaway.engine._children import ChildUnwinding
    from sagaway.engine.definitions import Compensation, StepDefinition

__all__ = ["Undo", "Unwinding", "compensations_due"]


@dataclass(frozen=True)
class Undo:
    """A compensation still to run: the forward step `entry` it undoes, and its
    `compensation` — or the `problem` that keeps it from running."""

    entry: JournalEntry
    compensation: Compensation | None = None
    problem: str | None = None


def compensations_due(journal: JournalCursor, steps: Mapping[str, StepDefinition]) -> list[Undo]:
    """The compensations an unwinding still has to run, newest completion first: every
    recorded step (done or failed, a fan-out's branches included) that has a compensation
    not yet done, and every child run that succeeded (undone as a run)."""
    due = []
    for entry in newest_first(journal):
        done = journal.undone.get(entry.position)
        if done is not None and done.status == EntryStatus.OK:
            continue
        if entry.kind == CHILD:
            if entry.status == EntryStatus.OK:
                due.append(Undo(entry))
            continue
        step = steps.get(entry.name)
        if step is None:
            due.append(Undo(entry, problem="this app no longer defines it"))
        elif step.undo is None:
            continue
        elif entry.args is None:
            problem = "its arguments were not recorded (it had no compensation then)"
            due.append(Undo(entry, problem=problem))
        else:
            due.append(Undo(entry, step.undo))
    return due


class Unwinding:
    """Runs the compensations of one execution's run."""

    def __init__(
        self,
        journal: JournalCursor,
        writer: RunWriter,
        attempts: Attempts,
        steps: Mapping[str, StepDefinition],
        metrics: EngineMetrics,
        stopping: threading.Event,
        children: ChildUnwinding | None = None,
    ) -> None:
        self.journal, self.writer, self.attempts = journal, writer, attempts
        self.steps, self.metrics, self.stopping = steps, metrics, stopping
        self.children = children  # child runs: settled first, undone as runs

    def start(self, error: ErrorRecord | None, cancelled: bool) -> None:
        """The saga failed with `error` (or was cancelled): record that, then unwind."""
        self.writer.event("compensating", cancelled=cancelled)
        text = error.to_json() if error is not None else None
        self.writer.flush(RunUpdate(status=RunStatus.COMPENSATING, error=text))
        self.run(error, cancelled)

    def resume(self, recorded: str | None, cancelled: bool) -> None:
        """Go on unwinding a run claimed while `compensating` (after a crash or a redrive)."""
        error = ErrorRecord.from_json(recorded)
        if error is not None and error.phase == "compensation":
            error = error.original  # a redriven compensation: the error that began it all
        self.run(error, cancelled)

    def run(self, error: ErrorRecord | None, cancelled: bool) -> None:
        """Run every due compensation; end compensated/cancelled, or failed at the first
        compensation that gives up."""
        self.metrics.compensating(self.writer.run.saga)
        if self.children is not None:
            self.children.settle()  # children still running are cancelled and awaited
        for undo in compensations_due(self.journal, self.steps):
            if undo.entry.kind == CHILD and self.children is not None:
                started = self.writer.store.now()
                result, problem = self.children.compensate(undo.entry)
                if problem is not None:
                    self._give_up(undo.entry, problem, 1, error, started)
                    return
                self._record(
                    JournalEntry.compensation(
                        undo.entry.position, undo.entry.name, result=result, attempts=1,
                        started_at=started, finished_at=self.writer.store.now(),
                    )
                )  # fmt: skip
                continue
            if undo.problem is not None or undo.compensation is None:
                problem = RuntimeError(
                    f"cannot compensate step {undo.entry.name!r} at position "
                    f"{undo.entry.position}: {undo.problem}; fix the code or undo it by hand, "
                    "then `redrive` the run"
                )
                self._give_up(undo.entry, problem, 0, error, self.writer.store.now())
                return
            if not self._compensate(undo.entry, undo.compensation, error):
                return
        status = RunStatus.CANCELLED if cancelled else RunStatus.COMPENSATED
        self.writer.finish(status, error=error.to_json() if error is not None else None)

    def _compensate(
        self, entry: JournalEntry, undo: Compensation, error: ErrorRecord | None
    ) -> bool:
        if self.stopping.is_set():
            raise Abandon(True)
        self.writer.before_effect()
        saved = serde.loads(entry.args or "{}")
        kwargs = dict(saved.get("kwargs", {}))
        if undo.takes_result:
            # A completed step without result text reads as None, as replay reads it.
            kwargs["result"] = serde.loads(entry.result or "null") if entry.status == "ok" else None
        started = self.writer.store.now()
        body = Body(undo.fn, undo.is_async, undo.retry, undo.timeout_guard)
        args = tuple(saved.get("args", []))
        outcome = self.attempts.call(
            entry.name, entry.position, body, args, kwargs, compensating=True
        )
        if not outcome.ok:
            assert outcome.error is not None
            self._give_up(entry, outcome.error, outcome.tries, error, started)
            return False
        self.writer.publish(outcome.published)
        self._record(
            JournalEntry.compensation(
                entry.position,
                entry.name,
                result=outcome.text,
                attempts=outcome.tries,
                started_at=started,
                finished_at=self.writer.store.now(),
            )
        )
        self.metrics.compensated_step(self.writer.run.saga, entry.name)
        return True

    def _give_up(
        self,
        entry: JournalEntry,
        exc: BaseException,
        tries: int,
        original: ErrorRecord | None,
        started: float,
    ) -> None:
        record = serde.error_record(
            exc, phase="compensation", position=entry.position, step=entry.name,
            original=original,
        )  # fmt: skip
        text = record.to_json()
        self._record(
            JournalEntry.compensation(
                entry.position,
                entry.name,
                error=text,
                attempts=tries,
                started_at=started,
                finished_at=self.writer.store.now(),
            )
        )
        self.writer.escalate(
            entry.name,
            reason="compensation exhausted its retries",
            position=entry.position,
            error=f"{type(exc).__name__}: {exc}",
        )
        self.writer.finish(RunStatus.FAILED, error=text)

    def _record(self, entry: JournalEntry) -> None:
        self.journal.add(entry)
        self.writer.record(entry)
