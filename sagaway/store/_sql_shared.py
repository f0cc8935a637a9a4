"""Breaker states and token buckets shared by every worker process through the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sagaway.store._sql_core import (
    SHARED_TABLES,
    Cursorish,
    SqlCore,
)

__all__ = ["SharedStateStatements"]

V = TypeVar("V")


class SharedStateStatements(SqlCore):
    """The `SharedStateStore` contract over SQL."""

    # --- state shared by all workers -------------------------------------------------------
    def read_shared(self, kind: str, name: str) -> tuple[Any, ...] | None:
        table, columns = SHARED_TABLES[kind]
        row = self._read(
            lambda cur: cur.one(f"SELECT {columns} FROM {table} WHERE name = ?", (name,))
        )
        if row is None or row[0] is None:
            return None
        return tuple(row)

    def publish_breaker(
        self, name: str, state: str, until: float, expected_version: int
    ) -> tuple[str, float, int]:
        def work(cur: Cursorish) -> tuple[str, float, int]:
            if expected_version == 0:
                cur.execute(
                    "INSERT INTO sagaway_breakers (name, state, until, version) "
                    "VALUES (?, ?, ?, 1) ON CONFLICT (name) DO NOTHING",
                    (name, state, until),
                )
            else:
                cur.execute(
                    "UPDATE sagaway_breakers SET state = ?, until = ?, version = version + 1 "
                    "WHERE name = ? AND version = ?",
                    (state, until, name, expected_version),
                )
            row = cur.only(
                "SELECT state, until, version FROM sagaway_breakers WHERE name = ?", (name,)
            )
            return (row[0], float(row[1]), int(row[2]))

        return self._write(work)

    def update_bucket(
        self,
        name: str,
        change: Callable[[tuple[float, float] | None], tuple[tuple[float, float], V]],
    ) -> V:
        def work(cur: Cursorish) -> V:
            cur.execute(
                "INSERT INTO sagaway_limiters (name, tokens, stamp) VALUES (?, NULL, NULL) "
                "ON CONFLICT (name) DO NOTHING",
                (name,),
            )
            row = cur.only(
                f"SELECT tokens, stamp FROM sagaway_limiters WHERE name = ? {self.row_lock}",
                (name,),
            )
            level = None if row[0] is None else (float(row[0]), float(row[1]))
            new_level, value = change(level)
            cur.execute(
                "UPDATE sagaway_limiters SET tokens = ?, stamp = ? WHERE name = ?",
                (new_level[0], new_level[1], name),
            )
            return value

        return self._write(work)
