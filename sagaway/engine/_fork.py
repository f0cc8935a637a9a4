"""Forking a run: which of its journal entries a fork reuses, checked before anything is
written. A fork keeps the forward entries before `from_step` (they return their recorded
results without running) and runs the saga from there anew, as a new run of the same input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sagaway._ids import time_ordered_id
from sagaway.engine._branches import is_branch, split_position
from sagaway.engine.definitions import StepDefinition
from sagaway.errors import ConfigurationError, IdempotencyConflict, InvalidRunState, RunNotFound
from sagaway.store.base import (
    FORWARD,
    TERMINAL,
    EntryStatus,
    JournalEntry,
    NewRun,
    RunRecord,
    Store,
)
from sagaway.store.flow import FlowControl

__all__ = ["passes_pivot", "reused_entries"]


def reused_entries(
    origin: RunRecord, journal: Sequence[JournalEntry], from_step: int
) -> list[JournalEntry]:
    """The entries of `origin`'s journal a fork from `from_step` keeps.

    Raises InvalidRunState while the origin has not ended (both would act at once), or when a
    kept entry did not succeed (forking from there or earlier runs it anew);
    ConfigurationError for a `from_step` outside 0 … the number of forward entries.
    """
    if origin.status not in TERMINAL:
        raise InvalidRunState(
            f"run {origin.id} is {origin.status}: only a run that has ended can be forked "
            "(cancel it first, or wait until it ends)"
        )
    # A fan-out's branches go with it: they are not positions of their own (`_branches`).
    forward = [e for e in journal if e.phase == FORWARD and not is_branch(e.position)]
    if isinstance(from_step, bool) or not isinstance(from_step, int):
        raise ConfigurationError(
            f"from_step={from_step!r}: give a journal position, a whole number"
        )
    if not 0 <= from_step <= len(forward):
        raise ConfigurationError(
            f"from_step={from_step} is outside run {origin.id}'s journal: give 0 to run it all "
            f"anew, up to {len(forward)} to reuse every recorded step"
        )
    kept = [entry for entry in forward if entry.position < from_step]
    for entry in kept:
        if entry.status != EntryStatus.OK:
            raise InvalidRunState(
                f"run {origin.id}: {entry.kind} {entry.name!r} at position {entry.position} "
                f"ended {entry.status}, so a fork cannot reuse it: fork with "
                f"from_step={entry.position} or less to run it anew"
            )
    kept_fanouts = {e.position for e in kept}
    branches = [
        e
        for e in journal
        if e.phase == FORWARD
        and is_branch(e.position)
        and split_position(e.position)[0] in kept_fanouts
    ]
    return kept + branches


def passes_pivot(entries: Sequence[JournalEntry], steps: Mapping[str, StepDefinition]) -> bool:
    """Whether a reused entry is a pivot step this App declares (then the fork, like its
    origin, can no longer be cancelled)."""
    return any(
        entry.kind == "step" and entry.name in steps and steps[entry.name].pivot
        for entry in entries
    )


def create_fork(
    store: Store,
    steps: Mapping[str, StepDefinition],
    run_id: str,
    from_step: int,
    key: str | None,
) -> tuple[RunRecord, bool]:
    """Check and write a fork of run `run_id` (see `App.fork`): (its record, created)."""
    origin = store.get_run(run_id)
    if origin is None:
        raise RunNotFound(run_id)
    entries = reused_entries(origin, store.journal(run_id), from_step)
    # The origin's flow control as it was stored: its key and priority, not held, not queued.
    flow = origin.flow and FlowControl(origin.flow.key, origin.flow.limit, origin.flow.priority)
    new = NewRun(
        time_ordered_id(), origin.saga, key, origin.input, origin.input_hash, store.now(), flow=flow
    )
    pivot = passes_pivot(entries, steps)
    record, created = store.create_fork(new, origin.id, from_step, entries, pivot)
    if not created:
        link = store.fork_origin(record.id)
        if link is None or (link.origin_id, link.from_step) != (origin.id, from_step):
            raise IdempotencyConflict(
                origin.saga, key or "", record.id, f"not a fork of {run_id} from {from_step}"
            )
    return record, created
