"""The `RunBrowser` contract over SQL. Each list is one index range (schema 7 adds the
indexes): newest first by `created_at`, by `(saga, created_at)` or `(status, created_at)`,
and key searches by `(idem_key, id)`, compared byte by byte on both backends."""

from __future__ import annotations

from typing import Any

from sagaway.store._sql_core import RUN_COLUMNS, SqlCore, marks, run_record
from sagaway.store.base import RunRecord, RunStatus
from sagaway.store.browse import RunQuery, SharedBreaker, SharedBucket, Stuck

__all__ = ["BrowseStatements", "key_range"]

_STUCK = {
    Stuck.UNOWNED: "status IN ('running', 'compensating') AND due_at < ?",
    Stuck.PARKED: "status = 'waiting' AND substr(wait_name, 1, 5) = 'park:' AND ? IS NOT NULL",
    Stuck.OVERDUE: "status IN ('pending', 'waiting') AND due_at < ?",
    Stuck.FAILED: "status = 'failed' AND ? IS NOT NULL",
}


def key_range(prefix: str) -> tuple[str, str | None]:
    """The keys starting with `prefix` as a half-open range [low, high) of code points (None:
    no upper bound), which is byte order in UTF-8."""
    for end in range(len(prefix) - 1, -1, -1):
        if ord(prefix[end]) < 0x10FFFF:
            return prefix, prefix[:end] + chr(ord(prefix[end]) + 1)
    return prefix, None


def _where(query: RunQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if query.statuses:
        where.append(f"status IN ({marks(query.statuses)})")
        params.extend(str(RunStatus(s)) for s in query.statuses)
    if query.saga is not None:
        where.append("saga = ?")
        params.append(query.saga)
    if query.key is not None:
        where.append("idem_key = ?")
        params.append(query.key)
    if query.search:
        low, high = key_range(query.search)
        where.append("idem_key >= ?")
        params.append(low)
        if high is not None:
            where.append("idem_key < ?")
            params.append(high)
    if query.created_after is not None:
        where.append("created_at >= ?")
        params.append(query.created_after)
    if query.created_before is not None:
        where.append("created_at < ?")
        params.append(query.created_before)
    return where, params


class BrowseStatements(SqlCore):
    """Lists of runs for people."""

    def find_runs(
        self, query: RunQuery, limit: int, after: tuple[Any, str] | None = None
    ) -> list[RunRecord]:
        where, params = _where(query)
        if query.by_key:
            if after is not None:
                where.append("idem_key >= ? AND (idem_key > ? OR id > ?)")
                params.extend((after[0], after[0], after[1]))
            order = "idem_key, id"
        else:
            if after is not None:
                # The first condition is the index range; the second breaks ties by id.
                where.append("created_at <= ? AND (created_at < ? OR id < ?)")
                params.extend((after[0], after[0], after[1]))
            order = "created_at DESC, id DESC"
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT {RUN_COLUMNS} FROM sagaway_runs {clause} ORDER BY {order} LIMIT ?",
                (*params, limit),
            )
        )
        return [run_record(row) for row in rows]

    def count_matching(self, query: RunQuery, cap: int) -> int:
        where, params = _where(query)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        row = self._read(
            lambda cur: cur.only(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM sagaway_runs {clause} LIMIT ?) AS capped",
                (*params, cap),
            )
        )
        return int(row[0])

    def stuck_runs(self, kind: Stuck, now: float, grace: float, limit: int) -> list[RunRecord]:
        condition = _STUCK[Stuck(kind)]
        moment = now - grace if kind == Stuck.OVERDUE else now
        order = "due_at" if kind in (Stuck.UNOWNED, Stuck.OVERDUE) else "updated_at"
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE {condition} "
                f"ORDER BY {order}, id LIMIT ?",
                (moment, limit),
            )
        )
        return [run_record(row) for row in rows]

    def shared_breakers(self) -> list[SharedBreaker]:
        rows = self._read(
            lambda cur: cur.all(
                "SELECT name, state, until, version FROM sagaway_breakers ORDER BY name"
            )
        )
        return [SharedBreaker(r[0], r[1], float(r[2]), int(r[3])) for r in rows]

    def shared_buckets(self) -> list[SharedBucket]:
        rows = self._read(
            lambda cur: cur.all("SELECT name, tokens, stamp FROM sagaway_limiters ORDER BY name")
        )
        return [SharedBucket(r[0], r[1], r[2]) for r in rows]
