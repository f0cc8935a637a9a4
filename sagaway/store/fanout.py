"""The store's contract for fan-out inside a saga: child runs that name their parent.

A saga's `ctx.map` over a saga (and `ctx.child`) starts child runs that any worker may claim;
each names its parent run, the journal position of the parent's map and its index there. The
parent rests while they run and is made due as each one ends (`wake_parent`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sagaway.store.base import NewRun, RunRecord, Wait

__all__ = ["CHILD_WAIT", "ChildCounts", "ChildRun", "FanoutStore", "NewChild"]

# A parent resting until its children end waits under a name with this prefix; a child
# that ends makes such a parent due.
CHILD_WAIT = "children:"


@dataclass(frozen=True)
class NewChild:
    """A child run to insert: the run, and its index in the parent's map."""

    run: NewRun
    index: int


@dataclass(frozen=True)
class ChildRun:
    """A child run with the journal position of its parent's map and its index there."""

    run: RunRecord
    position: int
    index: int


class ChildCounts(NamedTuple):
    """The children of one map by how far they are: `created` in all, `active` (not ended),
    `succeeded`, `failed` (ended otherwise: compensated, failed, cancelled), and `parked`
    (active, resting on a breaker, rate limit or bulkhead)."""

    created: int = 0
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    parked: int = 0


class FanoutStore(ABC):
    """Child runs: created by a parent's map, counted, listed, woken, cancelled and
    compensated as runs."""

    @abstractmethod
    def create_children(self, parent_id: str, position: int, children: Sequence[NewChild]) -> None:
        """Insert child runs of the map at `position`, due now (any worker may claim them).
        A child whose (saga, key) exists already is left as it is."""

    @abstractmethod
    def child_counts(self, parent_id: str, position: int) -> ChildCounts:
        """How the children of the map at `position` stand."""

    @abstractmethod
    def children(
        self,
        parent_id: str,
        position: int | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[ChildRun]:
        """The children of a run (of the map at `position` only, when given), by position
        and index."""

    @abstractmethod
    def wake_parent(self, parent_id: str, now: float) -> None:
        """A child ended: make its parent due if it rests waiting for its children, else
        note it so that the parent's next rest does not happen."""

    @abstractmethod
    def compensate_run(self, run_id: str, now: float, error: str) -> RunRecord | None:
        """Move a succeeded run that has not passed its pivot to `compensating`, due now,
        with `error` as the reason: it runs its own compensations and ends `compensated`.
        Returns the run as it is afterwards, None when no such run exists."""

    @abstractmethod
    def cancel_children(self, parent_id: str, now: float) -> int:
        """Ask every child of the run that has not ended (nor passed its pivot) to cancel;
        return how many were asked."""

    @abstractmethod
    def rest_unwinding(
        self, run_id: str, epoch: int, now: float, wake_at: float, wait: Wait
    ) -> None:
        """A compensating run rests until `wake_at` (or until a child ends, see
        `wake_parent`): its owner is cleared, it stays `compensating`. Fenced by `epoch`
        (raises LeaseLost)."""
