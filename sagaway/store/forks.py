"""Forks: a new run of the same saga and input that keeps the first steps of another run's
journal and runs the rest anew, linked to the run it came from. The contract is
`ForkStore`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sagaway.store.base import JournalEntry, NewRun, RunRecord

__all__ = ["ForkLink", "ForkStore"]


@dataclass(frozen=True)
class ForkLink:
    """`run_id` was forked from `origin_id`, reusing its journal before `from_step`."""

    run_id: str
    origin_id: str
    from_step: int


class ForkStore(ABC):
    """Creating forks and following their links."""

    @abstractmethod
    def create_fork(
        self,
        new: NewRun,
        origin_id: str,
        from_step: int,
        entries: Sequence[JournalEntry],
        pivot_passed: bool = False,
    ) -> tuple[RunRecord, bool]:
        """Insert a pending run with `entries` as its journal (`pivot_passed` when one of them
        is a pivot step), linked to `origin_id`, and an event on both runs; atomically. With
        a key already taken by a run of the saga, nothing is written and that run is
        returned: (record, created)."""

    @abstractmethod
    def fork_origin(self, run_id: str) -> ForkLink | None:
        """Where the run was forked from, or None when it was started."""

    @abstractmethod
    def forks_of(self, run_id: str) -> list[ForkLink]:
        """The runs forked from this one, oldest first."""
