"""The deploy gate: replay every unfinished run's journal against the code now importable,
with no effect — no step body runs, nothing is written — and report each run that would
diverge, and where. `sagaway runs check module:app` runs it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sagaway.engine import _serde as serde
from sagaway.engine._compensation import compensations_due
from sagaway.engine._replay import JournalCursor
from sagaway.engine.context import EXECUTION, SagaContext
from sagaway.errors import WaitTimeout
from sagaway.store.base import (
    EntryStatus,
    ErrorRecord,
    JournalEntry,
    RunRecord,
    RunStatus,
    Store,
)

if TYPE_CHECKING:
    from sagaway.engine.definitions import SagaDefinition, StepDefinition

__all__ = ["Divergence", "check_runs"]

# Unfinished runs whose journal the gate replays (a `failed` run is included: redrive
# replays it on the code deployed then).
_UNFINISHED = (
    RunStatus.PENDING,
    RunStatus.RUNNING,
    RunStatus.WAITING,
    RunStatus.COMPENSATING,
    RunStatus.FAILED,
)
_BATCH = 500


@dataclass(frozen=True)
class Divergence:
    """A run the code now deployed would fail with non-determinism: at journal `position`
    the journal `recorded` one thing and the code now does `found` instead."""

    run_id: str
    saga: str
    status: str
    position: int
    recorded: str
    found: str
    message: str


class _Stop(BaseException):
    """The replay reached the end of the journal: what follows is new, not a divergence."""


class _DryReplay:
    """Answers the saga function's calls from the journal alone (no body, no write)."""

    def __init__(self, run: RunRecord, journal: list[JournalEntry]) -> None:
        self.run = run
        self.journal = JournalCursor(run.id, run.saga, journal)

    def call_step(self, step: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        _, entry = self.journal.next("step", step.name)
        if entry is None:
            raise _Stop
        self.journal.check_arguments(entry, serde.arguments_digest(args, kwargs))
        if entry.status == EntryStatus.OK:
            return serde.loads(entry.result or "null")
        raise serde.rebuild_error(entry.error) or RuntimeError(entry.error)

    def wait(self, signal: str, timeout: float | None) -> Any:
        _, entry = self.journal.next("wait", signal)
        if entry is None:
            raise _Stop
        if entry.status == EntryStatus.OK:
            return serde.loads(entry.result or "null")
        raise WaitTimeout(signal, timeout)

    def sleep(self, seconds: float) -> None:
        if self.journal.next("sleep", "sleep")[1] is None:
            raise _Stop

    def now(self) -> datetime:
        _, entry = self.journal.next("now", "now")
        if entry is None:
            raise _Stop
        return datetime.fromtimestamp(float(serde.loads(entry.result or "0")), UTC)

    def publish(
        self, topic: str, payload: Any, key: str | None, delay: float | None, dedup: str | None
    ) -> str:
        _, entry = self.journal.next("publish", topic)
        if entry is None:
            raise _Stop
        return str(serde.loads(entry.result or "null"))

    def patched(self, name: str, deprecated: bool = False) -> bool:
        found, position = self.journal.patch(name, deprecated)
        if position is not None:
            raise _Stop  # new territory from here on
        return found


def _replay(saga: SagaDefinition, run: RunRecord, journal: list[JournalEntry]) -> Divergence | None:
    dry = _DryReplay(run, journal)
    arguments = serde.loads(run.input)
    token = EXECUTION.set(dry)  # type: ignore[arg-type]  # it answers the same calls
    try:
        saga.fn(SagaContext(dry), *arguments["args"], **arguments["kwargs"])  # type: ignore[arg-type]
        dry.journal.check_complete()
    except _Stop:
        pass
    except BaseException:  # a recorded failure raised again, or the divergence itself
        pass
    finally:
        EXECUTION.reset(token)
    if dry.journal.divergence is None or dry.journal.divergence_at is None:
        return None
    position, recorded, found = dry.journal.divergence_at
    return Divergence(
        run.id, run.saga, run.status, position, recorded, found, str(dry.journal.divergence)
    )


def _unwinding(
    run: RunRecord, journal: list[JournalEntry], steps: Mapping[str, StepDefinition]
) -> Divergence | None:
    """A compensating run replays no code: it needs each due compensation to exist."""
    cursor = JournalCursor(run.id, run.saga, journal)
    for undo in compensations_due(cursor, steps):
        if undo.problem is not None:
            entry = undo.entry
            return Divergence(
                run.id,
                run.saga,
                run.status,
                entry.position,
                f"step {entry.name} to compensate",
                undo.problem,
                f"run {run.id}: cannot compensate step {entry.name!r}: {undo.problem}",
            )
    return None


def _unwinds(run: RunRecord) -> bool:
    """The run goes on by unwinding (now, or when redriven), not by replaying its saga."""
    if run.status == RunStatus.COMPENSATING:
        return True
    error = ErrorRecord.from_json(run.error) if run.status == RunStatus.FAILED else None
    return error is not None and error.phase == "compensation"


def check_runs(
    store: Store,
    sagas: Mapping[str, SagaDefinition],
    steps: Mapping[str, StepDefinition],
) -> Iterator[tuple[RunRecord, Divergence | None]]:
    """Every unfinished run, with how it would diverge on this code (None: it would not).
    A run of a saga this code does not define diverges at position 0."""
    for status in _UNFINISHED:
        after: str | None = None
        while chunk := store.runs_after(status, after, _BATCH):
            after = chunk[-1].id
            journals = store.journals([run.id for run in chunk])
            for run in chunk:
                saga = sagas.get(run.saga)
                journal = journals.get(run.id, [])
                if saga is None:
                    defined = ", ".join(sorted(sagas)) or "none"
                    yield (
                        run,
                        Divergence(
                            run.id,
                            run.saga,
                            run.status,
                            0,
                            f"saga {run.saga}",
                            "no such saga",
                            f"run {run.id}: this code does not define saga {run.saga!r} "
                            f"(it defines: {defined})",
                        ),
                    )
                elif _unwinds(run):
                    yield run, _unwinding(run, journal, steps)
                else:
                    yield run, _replay(saga, run, journal)
