"""Finding runs for people: filtered, searched and paged lists that stay fast at millions of
runs, the runs that look stuck, and the shared breaker and rate-limit states. The contract
is `RunBrowser`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagaway.store.base import RunRecord

__all__ = ["RunBrowser", "RunQuery", "SharedBreaker", "SharedBucket", "Stuck"]


@dataclass(frozen=True)
class RunQuery:
    """Which runs to list. Every given condition must hold.

    `statuses`: any of these; `key`: exactly this key; `search`: the start of a key (a
    search lists runs by key, then id; every other list is newest first);
    `created_after` / `created_before`: epoch seconds, inclusive / exclusive.
    """

    statuses: Sequence[str] = ()
    saga: str | None = None
    key: str | None = None
    search: str | None = None
    created_after: float | None = None
    created_before: float | None = None

    @property
    def by_key(self) -> bool:
        """Whether the list is ordered by key (a search) rather than newest first."""
        return bool(self.search)


class Stuck(StrEnum):
    """Kinds of runs that may need a person.

    `unowned`: running or compensating past the end of its lease (its worker is gone or
    hung); `parked`: waiting because a breaker, rate limit or bulkhead refused a step;
    `overdue`: pending or waiting, due for longer than the grace, and no worker took it;
    `failed`: ended failed, waiting for a redrive.
    """

    UNOWNED = "unowned"
    PARKED = "parked"
    OVERDUE = "overdue"
    FAILED = "failed"


@dataclass(frozen=True)
class SharedBreaker:
    """A breaker's state as every worker sees it: `state` until `until` (epoch seconds)."""

    name: str
    state: str
    until: float
    version: int


@dataclass(frozen=True)
class SharedBucket:
    """A shared rate limit's token bucket: `tokens` left at `stamp` (None: never used)."""

    name: str
    tokens: float | None
    stamp: float | None


class RunBrowser(ABC):
    """Lists of runs for the API and the dashboard."""

    @abstractmethod
    def find_runs(
        self, query: RunQuery, limit: int, after: tuple[Any, str] | None = None
    ) -> list[RunRecord]:
        """Up to `limit` runs matching `query`, in its order, starting after the run whose
        sort position is `after`: (created_at, id), or (key, id) for a search."""

    @abstractmethod
    def count_matching(self, query: RunQuery, cap: int) -> int:
        """How many runs match `query`, counting no further than `cap`."""

    @abstractmethod
    def stuck_runs(self, kind: Stuck, now: float, grace: float, limit: int) -> list[RunRecord]:
        """Up to `limit` runs of one stuck kind, oldest first (`grace`: seconds a due run may
        wait for a worker before it counts as overdue)."""

    @abstractmethod
    def shared_breakers(self) -> list[SharedBreaker]:
        """Every breaker state shared through the store, by name."""

    @abstractmethod
    def shared_buckets(self) -> list[SharedBucket]:
        """Every shared rate limit's bucket, by name."""
