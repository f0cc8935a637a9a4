"""The engine's per-minute metric buckets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sagaway.store._sql_core import (
    Cursorish,
    SqlCore,
)
from sagaway.store.base import MetricBucket

__all__ = ["MetricStatements"]


class MetricStatements(SqlCore):
    """The `MetricStore` contract over SQL."""

    # --- metrics ----------------------------------------------------------------------------
    def add_metrics(self, rows: Sequence[MetricBucket]) -> None:
        if not rows:
            return
        self._write(
            lambda cur: cur.many(
                "INSERT INTO sagaway_metrics (name, labels, minute, count, total, low, high) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, labels, minute) DO UPDATE SET "
                "count = sagaway_metrics.count + excluded.count, "
                "total = sagaway_metrics.total + excluded.total, "
                "low = CASE WHEN excluded.low < sagaway_metrics.low "
                "THEN excluded.low ELSE sagaway_metrics.low END, "
                "high = CASE WHEN excluded.high > sagaway_metrics.high "
                "THEN excluded.high ELSE sagaway_metrics.high END",
                sorted(rows),  # one lock order for every writer
            )
        )

    def prune_metrics(self, before_minute: int, stop: Callable[[], bool] | None = None) -> int:
        # A day of minutes per transaction: a long-neglected store is cut down without
        # holding the write lock for one huge delete.
        deleted = 0
        while stop is None or not stop():
            oldest = self._read(lambda cur: cur.only("SELECT MIN(minute) FROM sagaway_metrics"))[0]
            if oldest is None or oldest >= before_minute:
                break
            upto = min(oldest + 1440, before_minute)

            def delete(cur: Cursorish, upto: int = upto) -> int:
                return cur.execute("DELETE FROM sagaway_metrics WHERE minute < ?", (upto,)).rowcount

            deleted += self._write(delete)
        return deleted

    def metric_totals(self) -> list[tuple[str, str, int, float]]:
        rows = self._read(
            lambda cur: cur.all(
                "SELECT name, labels, SUM(count), SUM(total) FROM sagaway_metrics "
                "GROUP BY name, labels ORDER BY name, labels"
            )
        )
        return [(row[0], row[1], int(row[2]), float(row[3])) for row in rows]

    def metric_rows(self, name: str | None = None, since_minute: int = 0) -> list[MetricBucket]:
        clause = "minute >= ?"
        params: list[int | str] = [since_minute]
        if name is not None:
            clause += " AND name = ?"
            params.append(name)
        rows = self._read(
            lambda cur: cur.all(
                "SELECT name, labels, minute, count, total, low, high FROM sagaway_metrics "
                f"WHERE {clause} ORDER BY minute, name, labels",
                params,
            )
        )
        return [tuple(row) for row in rows]
