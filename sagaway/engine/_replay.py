"""Replay: the saga function runs again from the top, and every step call, wait, sleep or
clock reading takes the next journal position. A position already recorded gives back what
it recorded; a different action there, or a recorded step called with other arguments, is
non-determinism and fails the run."""

from __future__ import annotations

from typing import NoReturn

from sagaway.engine._branches import is_branch, position_label, split_position
from sagaway.errors import NonDeterminismError
from sagaway.store.base import FORWARD, JournalEntry

__all__ = ["JournalCursor"]


class JournalCursor:
    """A run's journal as its execution walks it: the recorded forward actions and
    compensations by position, and the position the saga function has reached."""

    def __init__(self, run_id: str, saga: str, journal: list[JournalEntry]) -> None:
        self.run_id, self.saga = run_id, saga
        self.forward: dict[int, JournalEntry] = {}
        self.undone: dict[int, JournalEntry] = {}
        # The branches of each fan-out (map, gather, child): position -> index -> entry.
        self.branches: dict[int, dict[int, JournalEntry]] = {}
        for entry in journal:
            self.add(entry)
        self.position = 0
        # The first divergence, kept: saga code that catches it must not hide it.
        self.divergence: NonDeterminismError | None = None
        # Where it was, what the journal holds there, and what the code did instead.
        self.divergence_at: tuple[int, str, str] | None = None

    def add(self, entry: JournalEntry) -> None:
        """Take a newly recorded entry into the journal."""
        if entry.phase == FORWARD and is_branch(entry.position):
            top, index = split_position(entry.position)
            self.branches.setdefault(top, {})[index] = entry
            return
        (self.forward if entry.phase == FORWARD else self.undone)[entry.position] = entry

    def next(self, kind: str, name: str) -> tuple[int, JournalEntry | None]:
        """The next position for a `kind` action called `name`, and what it recorded there
        (None when it is new). Raises NonDeterminismError when the journal disagrees."""
        if self.divergence is not None:
            raise self.divergence  # the first divergence is the one to report
        position = self.position
        self.position += 1
        entry = self.forward.get(position)
        if entry is not None and (entry.kind != kind or entry.name != name):
            self.diverge(
                f"replay reached {kind} {name!r} at journal position {position}, but the "
                f"journal records {entry.kind} {entry.name!r} there",
                (position, f"{entry.kind} {entry.name}", f"{kind} {name}"),
            )
        return position, entry

    def patch(self, name: str, deprecated: bool = False) -> tuple[bool, int | None]:
        """`ctx.patched(name)`: (True, position to record the patch marker at) where the
        run reaches it on new code; (True, None) where the journal holds the marker; (False,
        None) where the journal shows that the old code went on without it. With
        `deprecated` nothing new is recorded."""
        if self.divergence is not None:
            raise self.divergence
        entry = self.forward.get(self.position)
        if entry is not None and entry.kind == "patch" and entry.name == name:
            self.position += 1
            return True, None
        if entry is not None or deprecated:
            return False, None
        self.position += 1
        return True, self.position - 1

    def check_arguments(self, entry: JournalEntry, digest: str | None) -> None:
        """A recorded step call replayed with other arguments is a divergence (entries
        without a digest, and calls whose arguments are not JSON data, are not checked)."""
        if entry.digest is not None and digest != entry.digest:
            self.diverge(
                f"replay called step {entry.name!r} at journal position "
                f"{position_label(entry.position)} with other arguments than the recorded call",
                (entry.position, f"step {entry.name}", f"step {entry.name} (other arguments)"),
            )

    def resumes_at(self, position: int) -> bool:
        """Whether no forward action is recorded past `position`: the run rested there."""
        return all(p <= position for p in self.forward)

    def check_complete(self) -> None:
        """The saga returned: every recorded forward action must have been reached."""
        later = sorted(p for p in self.forward if p >= self.position)
        if later:
            entry = self.forward[later[0]]
            self.diverge(
                f"the saga returned after {self.position} journal positions, but the journal "
                f"records {entry.kind} {entry.name!r} at position {entry.position}",
                (entry.position, f"{entry.kind} {entry.name}", "the saga's end"),
            )

    def diverge(self, what: str, where: tuple[int, str, str]) -> NoReturn:
        """Fail the replay, saying where and what the likely causes are; `where` is
        (position, what the journal records, what the code did)."""
        self.divergence_at = where
        self.divergence = NonDeterminismError(
            f"run {self.run_id} of saga {self.saga!r}: {what}. Either the saga's code changed "
            "while this run was in flight, or code between steps is not deterministic "
            "(random numbers, clock readings, unordered data such as sets, reads of files or "
            "databases outside a step: use ctx.now(), ctx.uuid(), or move it into a step). "
            "Restore the code the run started with, or fix it and `redrive` the run"
        )
        raise self.divergence
