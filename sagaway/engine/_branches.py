"""Branches of a fan-out in the journal: where they are recorded, the order in which they
are undone, and the checks made on a map's arguments before anything is recorded.

A map, gather or child call takes one journal position `P`, like a step; its marker entry
there (kind `map`, `gather` or `children`) is `running` while it goes on and `ok` or `failed`
once it ended. Branch `i` is recorded at `branch_position(P, i)`, a position beyond every
position a saga function reaches itself, so replay finds each branch where it was recorded
whatever the order in which branches completed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from sagaway.errors import ConfigurationError
from sagaway.store.base import ErrorRecord, JournalEntry

if TYPE_CHECKING:
    from sagaway.engine._replay import JournalCursor
    from sagaway.engine.definitions import StepDefinition

__all__ = [
    "BRANCH_KINDS",
    "CHILD",
    "MARKERS",
    "Call",
    "branch_position",
    "check_concurrency",
    "check_items",
    "check_tolerance",
    "dry",
    "is_branch",
    "newest_first",
    "note_failure",
    "position_label",
    "split_position",
    "take_position",
]

_STRIDE = 1 << 31  # items per map at most; top-level positions stay below it
MARKERS = frozenset({"map", "gather", "children"})  # kinds of a fan-out's own entry
CHILD = "child"  # kind of a branch that is a child run
BRANCH_KINDS = frozenset({"step", CHILD})
# Threads a map of steps uses at most when no `concurrency` is given.
DEFAULT_THREADS = 32


class Call(NamedTuple):
    """A step call made ready for `ctx.gather`: `step.bind(*args, **kwargs)`."""

    step: StepDefinition
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def branch_position(position: int, index: int) -> int:
    """The journal position of branch `index` of the fan-out at `position`."""
    return (position + 1) * _STRIDE + index


def is_branch(position: int) -> bool:
    """Whether a journal position is a branch's."""
    return position >= _STRIDE


def split_position(position: int) -> tuple[int, int]:
    """(the fan-out's position, the branch's index) of a branch position."""
    return position // _STRIDE - 1, position % _STRIDE


def position_label(position: int) -> str:
    """A position as people read it: `7` for a saga's own action, `7.42` for branch 42 of
    the fan-out at 7 (idempotency keys use it)."""
    if not is_branch(position):
        return str(position)
    top, index = split_position(position)
    return f"{top}.{index}"


def newest_first(journal: JournalCursor) -> Iterator[JournalEntry]:
    """Every recorded step call and child run, the newest completion first: the saga's own
    steps by position, the branches of a fan-out in the order they completed (all between
    the steps before the fan-out and those after it)."""

    def order(entry: JournalEntry) -> tuple[int, float, int]:
        if is_branch(entry.position):
            top, index = split_position(entry.position)
            return top, entry.finished_at, index
        return entry.position, 0.0, 0

    recorded = [e for e in journal.forward.values() if e.kind == "step"]
    for branches in journal.branches.values():
        recorded.extend(e for e in branches.values() if e.kind in BRANCH_KINDS)
    yield from sorted(recorded, key=order, reverse=True)


def take_position(
    journal: JournalCursor, kind: str, name: str, digest: str | None, what: str
) -> tuple[int, JournalEntry | None]:
    """The fan-out's journal position and its own entry there (None when new); other items
    than the recorded ones are non-determinism."""
    position, marker = journal.next(kind, name)
    if marker is not None and marker.digest is not None and marker.digest != digest:
        journal.diverge(
            f"replay reached {what} at journal position {position} with other items than the "
            "recorded ones",
            (position, f"{kind} {name}", f"{kind} {name} (other items)"),
        )
    return position, marker


def dry(execution: Any) -> bool:
    """Whether the saga is replayed by the deploy gate (`_check`), which answers from the
    journal alone: a fan-out that has not ended stops that replay (what follows is new)."""
    return not hasattr(execution, "writer")


def note_failure(execution: Any, error: BaseException, record: ErrorRecord) -> None:
    """Say how the error a fan-out raises into the saga is recorded (where, which step), so
    that the run's error names the fan-out's position (a redrive resumes there)."""
    failures = getattr(execution, "_failures", None)
    if failures is not None:
        failures[id(error)] = record


# --- checks made at the call, before anything is recorded ----------------------------------
def check_items(items: Any, what: str) -> list[Any]:
    """The items of a map as a list; refuses what has no reliable order."""
    if isinstance(items, (list, tuple, range)):
        if len(items) >= _STRIDE:
            raise ConfigurationError(f"{what}: {len(items)} items; a map takes fewer than 2**31")
        return list(items)
    raise ConfigurationError(
        f"{what}: items must be a list (got {type(items).__name__}): pass list(...) in an order "
        "that is the same on every replay (sorted(...) for a set or a dict's keys)"
    )


def check_concurrency(value: Any, what: str) -> int | None:
    """A map's `concurrency`: None, or a whole number of branches at once, 1 or more."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"{what}: concurrency={value!r} must be a whole number of branches at once, 1 or "
            "more (or None: children all at once, steps on up to "
            f"{DEFAULT_THREADS} threads)"
        )
    return value


def check_tolerance(value: Any, count: int, what: str) -> int:
    """How many failed branches a map tolerates: an int is a count, a float below 1 a
    fraction of the items, rounded down."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{what}: tolerated_failures={value!r} must be a count (int) or a fraction of the "
            "items below 1 (float)"
        )
    if isinstance(value, int):
        if value < 0:
            raise ConfigurationError(
                f"{what}: tolerated_failures={value} must be 0 or more failed branches"
            )
        return value
    if not 0.0 <= value < 1.0:
        raise ConfigurationError(
            f"{what}: tolerated_failures={value!r} as a fraction must be from 0 to below 1 "
            "(give a count as an int, e.g. 5)"
        )
    return math.floor(value * count)
