"""`Run`: a handle on one saga run, and `Step`: one line of its journal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from sagaway.engine import _serde as serde
from sagaway.engine._branches import MARKERS, is_branch, split_position
from sagaway.errors import RunNotFound, SagaCancelled, SagaCompensated, SagaFailed, SagaOutcome
from sagaway.store.base import (
    TERMINAL,
    EntryStatus,
    ErrorRecord,
    EventRecord,
    JournalEntry,
    RunRecord,
    RunStatus,
)
from sagaway.store.fanout import ChildCounts

if TYPE_CHECKING:
    from sagaway.engine.app import App

__all__ = ["Run", "Step"]

_OUTCOMES: dict[str, type[SagaOutcome]] = {
    RunStatus.COMPENSATED: SagaCompensated,
    RunStatus.FAILED: SagaFailed,
    RunStatus.CANCELLED: SagaCancelled,
}


@dataclass(frozen=True)
class Step:
    """One journal line: a step, wait, sleep or clock reading (phase "forward"), or the
    compensation of the step at the same position (phase "compensation").

    A fan-out (kind `map`, `gather` or `children`) is one line whose `branches` are its
    recorded branches by index (steps, or child runs of kind `child`) and whose `counts` say
    how many items it has and how many are done, failed, running and parked. A branch's
    `position` is its fan-out's and `index` its place in the items."""

    position: int
    phase: str
    kind: str
    name: str
    status: str
    attempts: int
    args: Any
    result: Any
    error: dict[str, Any] | None
    started_at: float
    finished_at: float
    index: int | None = None
    branches: tuple[Step, ...] = ()
    counts: dict[str, int] | None = None

    @classmethod
    def from_entry(cls, entry: JournalEntry) -> Step:
        """Decode a stored journal entry."""
        position, index = entry.position, None
        if is_branch(position):
            position, index = split_position(position)
        return cls(
            position=position,
            index=index,
            phase=entry.phase.label,
            kind=entry.kind,
            name=entry.name,
            status=entry.status,
            attempts=entry.attempts,
            args=serde.loads(entry.args) if entry.args else None,
            result=serde.loads(entry.result) if entry.result else None,
            error=json.loads(entry.error) if entry.error else None,
            started_at=entry.started_at,
            finished_at=entry.finished_at,
        )


class Run:
    """A live handle on a run: `status`, `steps` and `events` read the store each time."""

    def __init__(self, app: App, record: RunRecord) -> None:
        self._app = app
        self._record = record
        self.id = record.id
        self.saga = record.saga
        self.key = record.key

    def refresh(self) -> RunRecord:
        """The run's current row (also cached as `record`)."""
        record = self._app.store.get_run(self.id)
        if record is None:
            raise RunNotFound(self.id)
        self._record = record
        return record

    @property
    def parent_id(self) -> str | None:
        """The run whose `ctx.map` or `ctx.child` started this one, if any."""
        return self._record.parent_id

    @property
    def concurrency_key(self) -> str | None:
        """The key of its saga's concurrency limit, computed when it started ("" for one
        limit over the whole saga, None for a saga without a limit)."""
        flow = self._record.flow
        return None if flow is None else flow.key

    @property
    def priority(self) -> int:
        """Its priority among the runs waiting for a slot of its key (default 0)."""
        flow = self._record.flow
        return 0 if flow is None else flow.priority

    @property
    def record(self) -> RunRecord:
        """The row as last read."""
        return self._record

    @property
    def status(self) -> str:
        """pending, running, waiting, compensating, succeeded, compensated, failed or
        cancelled."""
        return self.refresh().status

    @property
    def steps(self) -> list[Step]:
        """The journal: forward entries by position (a fan-out's branches grouped under it,
        with counts), then compensations by position (a branch's with its index)."""
        return _grouped(self._app.store.journal(self.id), self._child_counts)

    def _child_counts(self, position: int) -> ChildCounts:
        return self._app.store.child_counts(self.id, position)

    @property
    def events(self) -> list[EventRecord]:
        """Retries, escalations, recoveries, cancel and redrive requests, oldest first."""
        return self._app.store.events(run_id=self.id)

    @property
    def forked_from(self) -> str | None:
        """The id of the run this one was forked from (`app.fork`), None for a started run."""
        link = self._app.store.fork_origin(self.id)
        return None if link is None else link.origin_id

    @property
    def input(self) -> dict[str, Any]:
        """The saga's arguments: {"args": [...], "kwargs": {...}}."""
        # JSON the engine wrote at start: always {"args": [...], "kwargs": {...}}.
        return cast(dict[str, Any], serde.loads(self._record.input))

    @property
    def error(self) -> BaseException | None:
        """The error that decided the run's outcome, if any (see `SagaOutcome.error`)."""
        record = self.refresh()
        return serde.rebuild_error(record.error) if record.error else None

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run to end; return the saga's value.

        Raises SagaCompensated, SagaFailed or SagaCancelled (each carrying the error as
        `.error`), or TimeoutError if the run has not ended within `timeout` seconds.
        """
        drive = self._app._drive_result
        if drive is not None:  # under sagaway.testing.virtual_time: its clock runs the run
            return drive(self, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = 0.01  # runs executed elsewhere are seen by polling, backing off to 0.2 s
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            local = self._app._completions.get(self.id)
            if local is not None:
                worker = self._app.worker
                if timeout is None and worker is not None:
                    worker.execute_here(local)  # if no worker thread has started it yet
                slice_ = 1.0 if remaining is None else max(0.0, min(1.0, remaining))
                if local.wait(slice_) and local.outcome is not None:
                    return self._outcome(*local.outcome)
            record = self.refresh()
            if record.status in TERMINAL:
                return self._outcome(record.status, record.result, record.error)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"run {self.id} is still {record.status} after {timeout} s "
                    "(it goes on; call result() again to keep waiting)"
                )
            if local is None:
                time.sleep(poll if remaining is None else min(poll, remaining))
                poll = min(0.2, poll * 2)

    def _outcome(self, status: str, result: str | None, error_text: str | None) -> Any:
        if status == RunStatus.SUCCEEDED:
            return serde.loads(result) if result else None
        recorded = ErrorRecord.from_json(error_text)
        error = serde.rebuild_error(recorded)
        detail = ""
        if recorded is not None and recorded.phase == "compensation":
            detail = f" (while compensating step {recorded.step!r}; redrive resumes there)"
        elif status == RunStatus.FAILED and recorded is not None and recorded.step:
            detail = f" (at step {recorded.step!r}; redrive resumes there)"
        raise _OUTCOMES[status](self.id, error, detail)

    def __repr__(self) -> str:
        return f"<Run {self.id} saga={self.saga} status={self._record.status}>"


def _grouped(entries: list[JournalEntry], children: Callable[[int], ChildCounts]) -> list[Step]:
    """Journal entries as `Run.steps` shows them: each fan-out's branches under it."""
    branches: dict[int, list[Step]] = {}
    lines: list[Step] = []
    for entry in entries:
        step = Step.from_entry(entry)
        if step.index is not None and step.phase == "forward":
            branches.setdefault(step.position, []).append(step)
        else:
            lines.append(step)
    grouped = []
    for step in lines:
        if step.kind in MARKERS and step.phase == "forward":
            mine = tuple(sorted(branches.get(step.position, ()), key=lambda b: b.index or 0))
            step = replace(step, branches=mine, counts=_counts(step, mine, children))
        grouped.append(step)
    return grouped


def _counts(
    marker: Step, branches: tuple[Step, ...], children: Callable[[int], ChildCounts]
) -> dict[str, int]:
    """Items, and how many are done, failed, running and parked, of a fan-out."""
    progress = marker.result if isinstance(marker.result, dict) else {}
    counts = {
        "items": int(progress.get("items", len(branches))),
        "done": sum(b.status == EntryStatus.OK for b in branches),
        "failed": sum(b.status != EntryStatus.OK for b in branches),
        "running": 0,
        "parked": 0,
    }
    if marker.status != EntryStatus.RUNNING:
        return counts
    if marker.kind == "children":  # children are runs: ask how they stand now
        now = children(marker.position)
        counts.update(
            done=now.succeeded, failed=now.failed, running=now.active - now.parked,
            parked=now.parked,
        )  # fmt: skip
    else:
        counts.update(
            running=int(progress.get("running", 0)), parked=int(progress.get("parked", 0))
        )
    return counts
