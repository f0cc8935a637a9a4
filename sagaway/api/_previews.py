"""What an action would do, said before it is done: the confirmation pages and the API's
dry runs show these. Read from the journal alone, as the engine decides: a step entry whose
arguments were recorded has a compensation, and one already compensated is not undone again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagaway.engine._branches import CHILD, is_branch, newest_first, split_position
from sagaway.engine._replay import JournalCursor
from sagaway.store.base import (
    COMPENSATION,
    FORWARD,
    TERMINAL,
    EntryStatus,
    ErrorRecord,
    JournalEntry,
    RunRecord,
    RunStatus,
)

__all__ = ["cancel_preview", "fork_preview", "redrive_preview"]


def _undo_due(journal: Sequence[JournalEntry]) -> list[dict[str, Any]]:
    undone = {e.position for e in journal if e.phase == COMPENSATION and e.status == EntryStatus.OK}
    cursor = JournalCursor("", "", list(journal))
    due = []
    for e in newest_first(cursor):  # the engine's order: a fan-out's branches by completion
        if e.position in undone:
            continue
        if (e.kind == "step" and e.args is not None) or (e.kind == CHILD and e.status == "ok"):
            due.append(_where(e) | {"step": e.name})
    return due


def _where(entry: JournalEntry) -> dict[str, Any]:
    """A journal position as the API shows it; a fan-out's branch adds its item's index."""
    if not is_branch(entry.position):
        return {"position": entry.position}
    position, index = split_position(entry.position)
    return {"position": position, "index": index}


def cancel_preview(run: RunRecord, journal: Sequence[JournalEntry]) -> dict[str, Any]:
    """Whether a cancel is accepted, and the compensations it will run, newest first (a run
    executing now may finish more steps before it stops: those are undone too)."""
    if run.status in TERMINAL:
        return {
            "allowed": False,
            "reason": f"the run has ended ({run.status})",
            "compensations": [],
        }
    if run.pivot_passed:
        reason = "the run passed its pivot step: what it did can no longer be compensated"
        return {"allowed": False, "reason": reason, "compensations": []}
    if run.cancel_requested:
        reason = "a cancel was already requested; the run is unwinding or will at its next step"
        return {"allowed": True, "reason": reason, "compensations": _undo_due(journal)}
    return {"allowed": True, "reason": None, "compensations": _undo_due(journal)}


def redrive_preview(run: RunRecord, journal: Sequence[JournalEntry]) -> dict[str, Any]:
    """Whether a redrive is accepted and where the run resumes."""
    if run.status != RunStatus.FAILED:
        return {"allowed": False, "reason": f"only failed runs can be redriven ({run.status})"}
    error = ErrorRecord.from_json(run.error)
    if error is not None and error.phase == "compensation":
        due = _undo_due(journal)
        return {
            "allowed": True,
            "reason": None,
            "resumes": "compensation",
            "step": error.step,
            "compensations": due,
            "ends": "compensated",
        }
    step = error.step if error is not None else None
    return {
        "allowed": True,
        "reason": None,
        "resumes": "forward",
        "step": step,
        "position": error.position if error is not None else None,
        "compensations": [],
        "ends": "as the saga decides",
    }


def fork_preview(
    run: RunRecord, journal: Sequence[JournalEntry], from_step: int | None = None
) -> dict[str, Any]:
    """The forward entries a fork reuses and runs anew from `from_step` (default: the first
    entry that did not succeed, else the end), and reused steps the origin compensated."""
    forward = sorted(  # a fan-out's branches go with it: not positions of their own
        (e for e in journal if e.phase == FORWARD and not is_branch(e.position)),
        key=lambda e: e.position,
    )
    if from_step is None:
        failed = [e.position for e in forward if e.status != EntryStatus.OK]
        from_step = failed[0] if failed else len(forward)
    undone = {e.position for e in journal if e.phase == COMPENSATION and e.status == EntryStatus.OK}
    reason = None
    if run.status not in TERMINAL:
        reason = f"only a run that has ended can be forked ({run.status})"
    elif not 0 <= from_step <= len(forward):
        reason = f"from_step must be from 0 to {len(forward)}"
    else:
        bad = [e for e in forward if e.position < from_step and e.status != EntryStatus.OK]
        if bad:
            reason = f"position {bad[0].position} ended {bad[0].status}: fork from it or earlier"
    return {
        "allowed": reason is None,
        "reason": reason,
        "from_step": from_step,
        "positions": len(forward),
        "reused": [
            {"position": e.position, "kind": e.kind, "name": e.name}
            for e in forward
            if e.position < from_step
        ],
        "compensated_in_origin": sorted(p for p in undone if p < from_step and not is_branch(p)),
    }
