"""The store's contract for the engine's per-minute metric buckets."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

__all__ = ["MetricBucket", "MetricStore"]

# One minute of one metric series: (name, labels, minute, count, total, low, high).
MetricBucket = tuple[str, str, int, int, float, float, float]


class MetricStore(ABC):
    """The engine's per-minute metric buckets, added to by every process of a store."""

    @abstractmethod
    def add_metrics(self, rows: Sequence[MetricBucket]) -> None:
        """Fold (name, labels, minute, count, total, low, high) into per-minute buckets."""

    @abstractmethod
    def prune_metrics(self, before_minute: int, stop: Callable[[], bool] | None = None) -> int:
        """Delete the buckets of minutes before `before_minute`, a day of minutes per
        transaction, until done or `stop()` is true; return how many went."""

    @abstractmethod
    def metric_totals(self) -> list[tuple[str, str, int, float]]:
        """(name, labels, count, sum) over every stored bucket."""

    @abstractmethod
    def metric_rows(self, name: str | None = None, since_minute: int = 0) -> list[MetricBucket]:
        """Stored buckets, oldest first: (name, labels, minute, count, total, low, high)."""
