"""Statements about runs: creating, reading, steering (signal, cancel, redrive) and pruning
them, with their journals, signals and events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sagaway.errors import ConfigurationError, InvalidRunState, RunNotFound
from sagaway.store._sql_core import (
    EVENT_INSERT,
    FLOW_COLUMNS,
    JOURNAL_COLUMNS,
    RUN_COLUMNS,
    Cursorish,
    SqlCore,
    Statement,
    flow_values,
    journal_entry,
    marks,
    run_record,
)
from sagaway.store.base import (
    SETTLED,
    TERMINAL,
    EventRecord,
    JournalEntry,
    NewRun,
    RunRecord,
    RunStatus,
    SignalRecord,
)

__all__ = ["RunStatements"]


class RunStatements(SqlCore):
    """Runs, journals, signals and events."""

    # --- runs ----------------------------------------------------------------------------
    def create_run(
        self, new: NewRun, owner: str | None = None, lease_until: float | None = None
    ) -> tuple[RunRecord, bool]:
        claimed = owner is not None

        def finish(row: Any, cur: Cursorish) -> tuple[RunRecord, bool]:
            if row is not None:
                if not claimed:
                    cur.wake()
                return run_record(row), True
            existing = cur.one(
                f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE saga = ? AND idem_key = ?",
                (new.saga, new.key),
            )
            if existing is None:
                # The run holding the key was pruned between the two statements (PostgreSQL
                # reads each statement's own snapshot): the key is free, insert again.
                return finish(cur.one(insert, params), cur)
            return run_record(existing), False

        insert = (
            f"INSERT INTO sagaway_runs (id, saga, idem_key, input, input_hash, status, "
            f"created_at, updated_at, due_at, owner, epoch, trace_context, {FLOW_COLUMNS}) "
            f"VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            f"ON CONFLICT (saga, idem_key) WHERE idem_key IS NOT NULL DO NOTHING "
            f"RETURNING {RUN_COLUMNS}"
        )
        params = [
            new.id,
            new.saga,
            new.key,
            new.input,
            new.input_hash,
            RunStatus.RUNNING if claimed else RunStatus.PENDING,
            new.now,
            new.now,
            lease_until if claimed else new.now,
            owner,
            1 if claimed else 0,
            new.trace_context,
            *flow_values(new),
        ]
        return self._write(Statement(insert, params, finish))

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._read(
            lambda cur: cur.one(f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE id = ?", (run_id,))
        )
        return None if row is None else run_record(row)

    def list_runs(
        self, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if saga is not None:
            where.append("saga = ?")
            params.append(saga)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT {RUN_COLUMNS} FROM sagaway_runs {clause} "
                f"ORDER BY created_at DESC, id DESC LIMIT ?",
                (*params, limit),
            )
        )
        return [run_record(row) for row in rows]

    def runs_after(self, status: str, after: str | None, limit: int) -> list[RunRecord]:
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE status = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (status, after or "", limit),
            )
        )
        return [run_record(row) for row in rows]

    def last_key(self, saga: str, prefix: str) -> str | None:
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        row = self._read(
            lambda cur: cur.one(
                "SELECT MAX(idem_key) FROM sagaway_runs WHERE saga = ? "
                "AND idem_key LIKE ? ESCAPE '\\'",
                (saga, pattern + "%"),
            )
        )
        return None if row is None or row[0] is None else str(row[0])

    def count_runs(self, saga: str | None = None) -> dict[str, int]:
        clause, params = ("WHERE saga = ?", (saga,)) if saga is not None else ("", ())
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT status, COUNT(*) FROM sagaway_runs {clause} GROUP BY status", params
            )
        )
        return {status: int(count) for status, count in rows}

    def journal(self, run_id: str) -> list[JournalEntry]:
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT {JOURNAL_COLUMNS} FROM sagaway_journal WHERE run_id = ? "
                "ORDER BY phase, position",
                (run_id,),
            )
        )
        return [journal_entry(row) for row in rows]

    def events(
        self, run_id: str | None = None, kind: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        where, params = [], []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT run_id, at, kind, data, id FROM sagaway_events {clause} "
                "ORDER BY id LIMIT ?",
                (*params, limit),
            )
        )
        return [EventRecord(*row) for row in rows]

    def pending_signal(
        self, run_id: str, name: str, skip: Sequence[int] = ()
    ) -> SignalRecord | None:
        exclude = f"AND id NOT IN ({marks(skip)})" if skip else ""
        row = self._read(
            lambda cur: cur.one(
                "SELECT id, run_id, name, payload, sent_at, trace_context FROM sagaway_signals "
                f"WHERE run_id = ? AND name = ? AND consumed_at IS NULL {exclude} "
                "ORDER BY id LIMIT 1",
                (run_id, name, *skip),
            )
        )
        return None if row is None else SignalRecord(*row)

    def pending_signals(self, run_id: str) -> list[SignalRecord]:
        rows = self._read(
            lambda cur: cur.all(
                "SELECT id, run_id, name, payload, sent_at, trace_context FROM sagaway_signals "
                "WHERE run_id = ? AND consumed_at IS NULL ORDER BY id",
                (run_id,),
            )
        )
        return [SignalRecord(*row) for row in rows]

    # --- control -------------------------------------------------------------------------
    def _existing(self, cur: Cursorish, run_id: str) -> RunRecord:
        # Locked (PostgreSQL) so that a prune deleting the run cannot commit between this
        # read and the writes that follow: they would add signals or events to no run.
        row = cur.one(
            f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE id = ? {self.row_lock}", (run_id,)
        )
        if row is None:
            raise RunNotFound(run_id)
        return run_record(row)

    def send_signal(
        self, run_id: str, name: str, payload: str, now: float, trace_context: str | None = None
    ) -> SignalRecord:
        def work(cur: Cursorish) -> SignalRecord:
            run = self._existing(cur, run_id)
            if run.status in SETTLED:
                raise InvalidRunState(
                    f"run {run_id} has ended ({run.status}): signals are kept only for runs "
                    "that can still wait for them"
                )
            row = cur.only(
                "INSERT INTO sagaway_signals (run_id, name, payload, sent_at, trace_context) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (run_id, name, payload, now, trace_context),
            )
            cur.execute(
                "UPDATE sagaway_runs SET wake_pending = 1, due_at = CASE "
                "WHEN status = 'waiting' AND wait_name = ? THEN ? ELSE due_at END WHERE id = ?",
                (name, now, run_id),
            )
            if run.status == RunStatus.WAITING and run.wait_name == name:
                cur.wake()
            return SignalRecord(row[0], run_id, name, payload, now, trace_context)

        return self._write(work)

    def request_cancel(self, run_id: str, now: float) -> RunRecord:
        def work(cur: Cursorish) -> RunRecord:
            run = self._existing(cur, run_id)
            if run.status in TERMINAL:
                raise InvalidRunState(
                    f"run {run_id} has already ended ({run.status}); there is nothing to cancel"
                )
            if run.pivot_passed:
                raise InvalidRunState(
                    f"run {run_id} has passed its pivot step: what it did can no longer be "
                    "undone by compensation, so it cannot be cancelled"
                )
            row = cur.only(
                "UPDATE sagaway_runs SET cancel_requested = 1, updated_at = ?, "
                "due_at = CASE WHEN status IN ('pending', 'waiting') THEN ? ELSE due_at END "
                f"WHERE id = ? RETURNING {RUN_COLUMNS}",
                (now, now, run_id),
            )
            cur.execute(
                EVENT_INSERT,
                (run_id, now, "cancel_requested", "{}"),
            )
            if run.status in (RunStatus.PENDING, RunStatus.WAITING):
                cur.wake()
            return run_record(row)

        return self._write(work)

    def redrive(self, run_id: str, now: float, status: str, rerun_position: int | None) -> None:
        def work(cur: Cursorish) -> None:
            run = self._existing(cur, run_id)
            if run.status != RunStatus.FAILED:
                raise InvalidRunState(
                    f"run {run_id} is {run.status}: only failed runs can be redriven"
                )
            keep_error = status == RunStatus.COMPENSATING  # the original error ends the unwinding
            cur.execute(
                "UPDATE sagaway_runs SET status = ?, due_at = ?, owner = NULL, updated_at = ?, "
                "wait_name = NULL, wait_position = NULL, wait_deadline = NULL"
                + ("" if keep_error else ", error = NULL")
                + " WHERE id = ?",
                (status, now, now, run_id),
            )
            if rerun_position is not None:
                cur.execute(
                    "DELETE FROM sagaway_journal WHERE run_id = ? AND phase = 0 AND position = ? "
                    "AND status <> 'ok'",
                    (run_id, rerun_position),
                )
            cur.execute(
                EVENT_INSERT,
                (run_id, now, "redriven", json.dumps({"status": status})),
            )
            cur.wake()

        self._write(work)

    def record_event(self, event: EventRecord) -> None:
        self._write(
            lambda cur: cur.execute(
                EVENT_INSERT,
                (event.run_id, event.at, event.kind, event.data),
            )
        )

    def prune_runs(self, ended_before: float, statuses: Sequence[str]) -> int:
        wanted = sorted(set(statuses))
        if not wanted or not set(wanted) <= TERMINAL:
            raise ConfigurationError(
                f"prune_runs(statuses={list(statuses)!r}): give one or more of "
                f"{sorted(TERMINAL)} (runs that have not ended are never pruned)"
            )
        batch = 500  # runs per transaction: the write lock is held briefly, many times

        def work(cur: Cursorish) -> int:
            # Selected and deleted in one write transaction (PostgreSQL: the rows locked;
            # signal, cancel and redrive lock the run too), so a run redriven meanwhile is
            # either redriven first and kept, or gone with everything about it. Rows another
            # pruner holds are skipped (the claim's clause): it deletes them. Children stay
            # while their parent has not settled: its map or unwinding still reads them.
            ids = [
                row[0]
                for row in cur.all(
                    f"SELECT id FROM sagaway_runs r WHERE status IN ({marks(wanted)}) "
                    "AND updated_at < ? AND (parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM "
                    "sagaway_runs p WHERE p.id = r.parent_id AND p.status NOT IN "
                    f"({marks(SETTLED)}))) LIMIT {batch} {self.lock_clause}",
                    (*wanted, ended_before, *SETTLED),
                )
            ]
            if ids:
                tables = ("sagaway_journal", "sagaway_signals", "sagaway_events", "sagaway_forks")
                for table in tables:
                    cur.execute(f"DELETE FROM {table} WHERE run_id IN ({marks(ids)})", ids)
                cur.execute(f"DELETE FROM sagaway_runs WHERE id IN ({marks(ids)})", ids)
            return len(ids)

        deleted = 0
        while True:  # until a batch finds nothing: on PostgreSQL one may come back short
            count = self._write(work)
            if count == 0:
                return deleted
            deleted += count
