"""Child runs over SQL: the `FanoutStore` contract."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sagaway.store._sql_core import (
    EVENT_INSERT,
    FLOW_COLUMNS,
    RUN_COLUMNS,
    Cursorish,
    SqlCore,
    flow_values,
    lease_lost,
    run_record,
)
from sagaway.store._sql_flow import release_slot
from sagaway.store.base import TERMINAL, NewRun, RunRecord, RunStatus, Wait
from sagaway.store.fanout import CHILD_WAIT, ChildCounts, ChildRun, NewChild

__all__ = ["FanoutStatements"]

_ENDED = sorted(TERMINAL)
_ENDED_SQL = f"({', '.join(repr(str(status)) for status in _ENDED)})"
_CHILD_INSERT = (
    "INSERT INTO sagaway_runs (id, saga, idem_key, input, input_hash, status, created_at, "
    "updated_at, due_at, epoch, parent_id, parent_position, parent_index, trace_context, "
    f"{FLOW_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (saga, idem_key) WHERE idem_key IS NOT NULL DO NOTHING"
)


def _child_row(new: NewRun, parent_id: str, position: int, index: int) -> tuple[Any, ...]:
    """The values of `_CHILD_INSERT` for one child."""
    created = due = new.now
    return (
        new.id, new.saga, new.key, new.input, new.input_hash, created, created, due,
        parent_id, position, index, new.trace_context, *flow_values(new),
    )  # fmt: skip


class FanoutStatements(SqlCore):
    """Creating, counting, listing, waking, cancelling and compensating child runs."""

    # --- fan-out ---------------------------------------------------------------------------
    def create_children(self, parent_id: str, position: int, children: Sequence[NewChild]) -> None:
        rows = [_child_row(c.run, parent_id, position, c.index) for c in children]
        if not rows:
            return

        def work(cur: Cursorish) -> None:
            cur.many(_CHILD_INSERT, rows)
            cur.wake()

        self._write(work)

    def child_counts(self, parent_id: str, position: int) -> ChildCounts:
        rows = self._read(
            lambda cur: cur.all(
                # Patterns are parameters: PostgreSQL's driver reads % in the SQL text.
                "SELECT status, COUNT(*), SUM(CASE WHEN wait_name LIKE ? THEN 1 ELSE 0 END) "
                "FROM sagaway_runs WHERE parent_id = ? AND parent_position = ? GROUP BY status",
                ("park:%", parent_id, position),
            )
        )
        created = active = succeeded = failed = parked = 0
        for status, count, resting in rows:
            created += int(count)
            if status == RunStatus.SUCCEEDED:
                succeeded += int(count)
            elif status in TERMINAL:
                failed += int(count)
            else:
                active += int(count)
                parked += int(resting or 0)
        return ChildCounts(created, active, succeeded, failed, parked)

    def children(
        self,
        parent_id: str,
        position: int | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[ChildRun]:
        where = ["parent_id = ?"]
        params: list[Any] = [parent_id]
        if position is not None:
            where.append("parent_position = ?")
            params.append(position)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        tail = ""
        if limit is not None:
            tail = " LIMIT ?"
            params.append(limit)
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT {RUN_COLUMNS}, parent_position, parent_index FROM sagaway_runs "
                f"WHERE {' AND '.join(where)} ORDER BY parent_position, parent_index{tail}",
                params,
            )
        )
        return [ChildRun(run_record(row[:-2]), int(row[-2]), int(row[-1])) for row in rows]

    def wake_parent(self, parent_id: str, now: float) -> None:
        resting = "owner IS NULL AND wait_name LIKE ? AND status IN ('waiting', 'compensating')"
        pattern = f"{CHILD_WAIT}%"

        def work(cur: Cursorish) -> None:
            # Children end by the thousand: only the first since the parent's claim writes
            # (and locks its row); the others find it flagged, or resting but due already.
            row = cur.one(
                "UPDATE sagaway_runs SET wake_pending = 1, "
                f"due_at = CASE WHEN {resting} THEN ? ELSE due_at END "
                f"WHERE id = ? AND (wake_pending = 0 OR ({resting} AND due_at > ?)) "
                "RETURNING due_at",
                (pattern, now, parent_id, pattern, now),
            )
            if row is not None and row[0] == now:
                cur.wake()

        self._write(work)

    def compensate_run(self, run_id: str, now: float, error: str) -> RunRecord | None:
        def work(cur: Cursorish) -> RunRecord | None:
            row = cur.one(
                "UPDATE sagaway_runs SET status = 'compensating', error = ?, due_at = ?, "
                "owner = NULL, updated_at = ?, wait_name = NULL, wait_position = NULL, "
                "wait_deadline = NULL WHERE id = ? AND status = 'succeeded' "
                f"AND pivot_passed = 0 RETURNING {RUN_COLUMNS}",
                (error, now, now, run_id),
            )
            if row is not None:
                cur.execute(EVENT_INSERT, (run_id, now, "compensation_requested", "{}"))
                cur.wake()
                return run_record(row)
            row = cur.one(f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE id = ?", (run_id,))
            return None if row is None else run_record(row)

        return self._write(work)

    def cancel_children(self, parent_id: str, now: float) -> int:
        def work(cur: Cursorish) -> int:
            rows = cur.all(
                "UPDATE sagaway_runs SET cancel_requested = 1, updated_at = ?, "
                "due_at = CASE WHEN status IN ('pending', 'waiting') THEN ? ELSE due_at END "
                f"WHERE parent_id = ? AND status NOT IN {_ENDED_SQL} AND pivot_passed = 0 "
                "AND cancel_requested = 0 RETURNING id",
                (now, now, parent_id),
            )
            data = json.dumps({"by": parent_id})
            cur.many(EVENT_INSERT, [(row[0], now, "cancel_requested", data) for row in rows])
            if rows:
                cur.wake()
            return len(rows)

        return self._write(work)

    def rest_unwinding(
        self, run_id: str, epoch: int, now: float, wake_at: float, wait: Wait
    ) -> None:
        params: list[Any] = [now, wait.name, wait.position, wait.deadline, now, wake_at]

        def work(cur: Cursorish) -> None:
            # A child that ended since the claim set wake_pending: then due at once.
            row = cur.one(
                "UPDATE sagaway_runs SET owner = NULL, updated_at = ?, wait_name = ?, "
                "wait_position = ?, wait_deadline = ?, flow_held = 0, "
                "due_at = CASE WHEN wake_pending = 1 THEN ? ELSE ? END "
                "WHERE id = ? AND epoch = ? RETURNING flow_limit",
                (*params, run_id, epoch),
            )
            if row is None:
                raise lease_lost(run_id, epoch)
            if row[0] is not None:  # resting, it gives its slot back
                release_slot(cur, run_id, now)
            cur.wake()

        self._write(work)
