"""The SQL both backends share: one implementation of the Store contract over DB-API.

Backends (`sqlite.py`, `postgres.py`) supply connections, transactions, the placeholder
style and the row-locking clause; every statement here is written once, with `?`
placeholders, in the SQL subset SQLite and PostgreSQL agree on.

A write that makes a run due (a new run, a signal to a waiting run, a cancel, a redrive, a
run handed back or parked on a timer) marks its transaction with `Cursorish.wake()`; the
backend's `_announce` then tells other processes in that same transaction (PostgreSQL:
NOTIFY, delivered on commit), so their workers look for due runs at once.

Writes go through a `GroupCommit`: each work function below runs inside a transaction that
may hold other callers' work too. A work function raises domain errors (LeaseLost,
RunNotFound, InvalidRunState) only before it has written anything, so such an error never
leaves half a write behind in the shared transaction.

A `Statement` is a write made of one statement (then perhaps reads): a backend may send
many at once and read their results together, or run a lone one without BEGIN and COMMIT.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sagaway.errors import (
    ConfigurationError,
    InvalidRunState,
    LeaseLost,
    RunNotFound,
    SagawayError,
    StoreUnavailable,
)
from sagaway.store.base import (
    KEEP,
    SETTLED,
    TERMINAL,
    Checkpoint,
    Claim,
    EntryStatus,
    EventRecord,
    JournalEntry,
    NewRun,
    Phase,
    RunRecord,
    RunStatus,
    RunUpdate,
    SignalRecord,
    Store,
)
from sagaway.store.groupcommit import GroupCommit

__all__ = ["JOURNAL_MARKS", "Cursorish", "SqlStore", "Statement"]

RUN_COLUMNS = (
    "id, saga, idem_key, input, input_hash, status, created_at, updated_at, due_at, owner, "
    "epoch, wait_name, wait_position, wait_deadline, pivot_passed, cancel_requested, result, "
    "error, recoveries"
)
JOURNAL_COLUMNS = (
    "position, phase, kind, name, status, args, result, error, attempts, started_at, "
    "finished_at, digest"
)
# The run id and one value per journal column.
JOURNAL_MARKS = ",".join("?" * (1 + len(JOURNAL_COLUMNS.split(","))))
JOURNAL_INSERT = f"INSERT INTO sagaway_journal (run_id, {JOURNAL_COLUMNS}) "
JOURNAL_CONFLICT = (
    "ON CONFLICT (run_id, phase, position) "
    "DO UPDATE SET kind = excluded.kind, name = excluded.name, "
    "status = excluded.status, args = excluded.args, result = excluded.result, "
    "error = excluded.error, attempts = excluded.attempts, "
    "started_at = excluded.started_at, finished_at = excluded.finished_at, "
    "digest = excluded.digest"
)
_JOURNAL_UPSERT = f"{JOURNAL_INSERT}VALUES ({JOURNAL_MARKS}) {JOURNAL_CONFLICT}"
_ACTIVE_SQL = "('running', 'compensating')"
_SHARED = {
    "breaker": ("sagaway_breakers", "state, until, version"),
    "limiter": ("sagaway_limiters", "tokens, stamp"),
}


def _run(row: Sequence[Any]) -> RunRecord:
    values = list(row)
    values[5] = RunStatus(values[5])
    values[14] = bool(values[14])
    values[15] = bool(values[15])
    return RunRecord(*values)


def _entry(row: Sequence[Any]) -> JournalEntry:
    position, phase, kind, name, status, *rest = row
    return JournalEntry(position, Phase(phase), kind, name, EntryStatus(status), *rest)


def makes_due(update: RunUpdate | None) -> bool:
    """Whether a checkpoint's run update moves the run's due time: handing it back, or
    parking it on a timer or a signal (other workers should look again)."""
    if update is None:
        return False
    return update.due_at not in (KEEP, None) or update.rest


def lease_lost(run_id: str, epoch: int) -> LeaseLost:
    """The error of a checkpoint refused by its fence."""
    return LeaseLost(
        f"run {run_id}: lease epoch {epoch} is no longer current; another worker took the run over"
    )


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


class Statement:
    """A write of one statement whose first row goes to `finish(row, cursor)`, which may
    read further and returns the write's value (or raises a domain error, when the statement
    wrote nothing). An `idempotent` one may be sent again after a lost connection."""

    __slots__ = ("finish", "idempotent", "params", "sql")

    def __init__(
        self,
        sql: str,
        params: Sequence[Any],
        finish: Callable[[Any, Cursorish], Any],
        idempotent: bool = False,
    ) -> None:
        self.sql, self.params, self.finish, self.idempotent = sql, params, finish, idempotent

    def __call__(self, cur: Cursorish) -> Any:
        return self.finish(cur.one(self.sql, self.params), cur)


class Cursorish:
    """The few DB-API calls the shared SQL uses, over one connection in a transaction."""

    def __init__(self, connection: Any, convert: Callable[[str], str]) -> None:
        self.connection = connection
        self._convert = convert
        self.woke = False

    def wake(self) -> None:
        """Note that this transaction makes a run due (or moves a timer)."""
        self.woke = True

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.connection.execute(self._convert(sql), params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.execute(sql, params).fetchall()

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cursor = self.connection.cursor()
            cursor.executemany(self._convert(sql), rows)


class SqlStore(Store):
    """Store contract over SQL; subclasses provide connections and dialect hooks."""

    lock_clause = ""  # appended to the claim's SELECT (PostgreSQL: FOR UPDATE SKIP LOCKED)
    # Reads a run's fence inside a write transaction. SQLite's write transactions exclude
    # each other; PostgreSQL adds FOR SHARE so that no claim can commit before we do.
    _fence_sql = "SELECT epoch, cancel_requested FROM sagaway_runs WHERE id = ?"
    row_lock = ""  # locks a row read inside a write transaction (PostgreSQL: FOR UPDATE)
    read_only = False  # opened with read_only=True: every write is refused

    def __init__(self) -> None:
        self._group = GroupCommit(
            self._run_batch, closed=lambda: StoreUnavailable(f"the store {self.url} is closed")
        )

    # --- backend hooks -------------------------------------------------------------------
    @abstractmethod
    def _convert(self, sql: str) -> str:
        """Rewrite `?` placeholders into the driver's style."""

    @abstractmethod
    @contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        """Yield a connection inside a write transaction; commit on exit, roll back on error."""

    @abstractmethod
    @contextmanager
    def _read_connection(self) -> Iterator[Any]:
        """Yield a connection for reads (autocommit or a short transaction)."""

    def _announce(self, cur: Cursorish) -> None:
        """Inside a write transaction that made runs due: tell other processes on commit.
        SQLite has no such channel (its workers poll)."""

    # --- plumbing ------------------------------------------------------------------------
    def _run_batch(self, works: list[Callable[[Cursorish], Any]]) -> list[tuple[bool, Any]]:
        try:
            with self._write_transaction() as conn:
                cur = Cursorish(conn, self._convert)
                outcomes = [self._attempt(work, cur) for work in works]
                if cur.woke:
                    self._announce(cur)
                return outcomes
        except _Retry:
            return self._run_each(works)

    def _run_each(self, works: list[Callable[[Cursorish], Any]]) -> list[tuple[bool, Any]]:
        """A batch hit a database error mid-way: run each write alone so only it fails."""
        outcomes = []
        for work in works:
            try:
                with self._write_transaction() as conn:
                    cur = Cursorish(conn, self._convert)
                    outcomes.append((True, work(cur)))
                    if cur.woke:
                        self._announce(cur)
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes

    @staticmethod
    def _attempt(work: Callable[[Cursorish], Any], cur: Cursorish) -> tuple[bool, Any]:
        try:
            return True, work(cur)
        except SagawayError as exc:  # raised before the work wrote anything
            return False, exc
        except Exception as exc:
            raise _Retry from exc

    def _write(self, work: Callable[[Cursorish], Any]) -> Any:
        if self.read_only:
            raise StoreUnavailable(
                f"the store {self.url} was opened read-only: open it with open_store(url) "
                "to change it"
            )
        return self._group.submit(work)

    def _read(self, work: Callable[[Cursorish], Any]) -> Any:
        with self._read_connection() as conn:
            return work(Cursorish(conn, self._convert))

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(transactions, writes) committed through group commit so far."""
        return self._group.batches, self._group.writes

    # --- runs ----------------------------------------------------------------------------
    def create_run(
        self, new: NewRun, owner: str | None = None, lease_until: float | None = None
    ) -> tuple[RunRecord, bool]:
        claimed = owner is not None

        def finish(row: Any, cur: Cursorish) -> tuple[RunRecord, bool]:
            if row is not None:
                if not claimed:
                    cur.wake()
                return _run(row), True
            existing = cur.one(
                f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE saga = ? AND idem_key = ?",
                (new.saga, new.key),
            )
            if existing is None:
                # The run holding the key was pruned between the two statements (PostgreSQL
                # reads each statement's own snapshot): the key is free, insert again.
                return finish(cur.one(insert, params), cur)
            return _run(existing), False

        insert = (
            f"INSERT INTO sagaway_runs (id, saga, idem_key, input, input_hash, status, "
            f"created_at, updated_at, due_at, owner, epoch) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
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
        ]
        return self._write(Statement(insert, params, finish))

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._read(
            lambda cur: cur.one(f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE id = ?", (run_id,))
        )
        return None if row is None else _run(row)

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
        return [_run(row) for row in rows]

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
        return [_entry(row) for row in rows]

    def _journals(self, run_ids: list[str]) -> dict[str, list[JournalEntry]]:
        found: dict[str, list[JournalEntry]] = {run_id: [] for run_id in run_ids}
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT run_id, {JOURNAL_COLUMNS} FROM sagaway_journal "
                f"WHERE run_id IN ({_marks(run_ids)}) ORDER BY run_id, phase, position",
                run_ids,
            )
        )
        for row in rows:
            found[row[0]].append(_entry(row[1:]))
        return found

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
        exclude = f"AND id NOT IN ({_marks(skip)})" if skip else ""
        row = self._read(
            lambda cur: cur.one(
                "SELECT id, run_id, name, payload, sent_at FROM sagaway_signals "
                f"WHERE run_id = ? AND name = ? AND consumed_at IS NULL {exclude} "
                "ORDER BY id LIMIT 1",
                (run_id, name, *skip),
            )
        )
        return None if row is None else SignalRecord(*row)

    def pending_signals(self, run_id: str) -> list[SignalRecord]:
        rows = self._read(
            lambda cur: cur.all(
                "SELECT id, run_id, name, payload, sent_at FROM sagaway_signals "
                "WHERE run_id = ? AND consumed_at IS NULL ORDER BY id",
                (run_id,),
            )
        )
        return [SignalRecord(*row) for row in rows]

    # --- workers -------------------------------------------------------------------------
    def claim(self, owner: str, limit: int, now: float, lease_until: float) -> list[Claim]:
        def work(cur: Cursorish) -> list[tuple[RunRecord, str | None]]:
            due = cur.all(
                "SELECT id, owner FROM sagaway_runs WHERE due_at <= ? "
                f"ORDER BY due_at LIMIT ? {self.lock_clause}",
                (now, limit),
            )
            if not due:
                return []
            previous = {run_id: prior for run_id, prior in due}
            ids = list(previous)
            rows = cur.all(
                "UPDATE sagaway_runs SET owner = ?, epoch = epoch + 1, due_at = ?, "
                "wake_pending = 0, updated_at = ?, "
                "status = CASE WHEN status IN ('pending', 'waiting') "
                "THEN 'running' ELSE status END, recoveries = recoveries + "
                "CASE WHEN owner IS NULL THEN 0 ELSE 1 END "
                f"WHERE id IN ({_marks(ids)}) RETURNING {RUN_COLUMNS}",
                (owner, lease_until, now, *ids),
            )
            cur.many(
                "INSERT INTO sagaway_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)",
                [
                    (run_id, now, "recovered", json.dumps({"from": prior, "to": owner}))
                    for run_id, prior in previous.items()
                    if prior is not None
                ],
            )
            return [(_run(row), previous[row[0]]) for row in rows]

        claimed = self._write(work)
        if not claimed:
            return []
        journals = self._journals([run.id for run, _ in claimed])
        return [Claim(run, journals[run.id], prior) for run, prior in claimed]

    def _run_update(self, cp: Checkpoint, update: RunUpdate) -> tuple[str, list[Any]]:
        sets, params = ["updated_at = ?"], [cp.now]
        for column in ("status", "owner", "result", "error"):
            value = getattr(update, column)
            if value is not KEEP:
                sets.append(f"{column} = ?")
                params.append(value)
        if update.wait is not KEEP:
            name, position, deadline = update.wait or (None, None, None)
            sets.append("wait_name = ?, wait_position = ?, wait_deadline = ?")
            params += [name, position, deadline]
        if update.pivot_passed:
            sets.append("pivot_passed = 1")
        if update.clear_cancel:
            sets.append("cancel_requested = 0")
        due = update.due_at
        if due is KEEP and cp.lease_until is not None:
            due = cp.lease_until
        if due is not KEEP:
            if update.rest:
                # Read from the run's own row: a signal or cancel that commits while this
                # statement waits for the row is seen (a subquery's snapshot would not be).
                sets.append(
                    "due_at = CASE WHEN wake_pending = 1 OR cancel_requested = 1 THEN ? ELSE ? END"
                )
                params += [cp.now, due]
            else:
                sets.append("due_at = ?")
                params.append(due)
        params += [cp.run_id, cp.epoch]
        return (
            f"UPDATE sagaway_runs SET {', '.join(sets)} WHERE id = ? AND epoch = ? "
            "RETURNING epoch, cancel_requested",
            params,
        )

    def checkpoint(self, cp: Checkpoint) -> bool:
        if cp.update is None:
            # Most checkpoints only add journal lines: read the fence, write one page.
            fence, params = self._fence_sql, [cp.run_id]
        else:
            fence, params = self._run_update(cp, cp.update)
        run_id, epoch = cp.run_id, cp.epoch
        wakes = makes_due(cp.update)
        entries = [(run_id, *entry) for entry in cp.entries]
        consumed = [(position, signal_id) for signal_id, position in cp.consumed]
        events = [(e.run_id, e.at, e.kind, e.data) for e in cp.events]

        def work(cur: Cursorish) -> bool:
            row = cur.one(fence, params)
            if row is None or row[0] != epoch:
                raise lease_lost(run_id, epoch)
            if len(entries) == 1:
                cur.execute(_JOURNAL_UPSERT, entries[0])
            else:
                cur.many(_JOURNAL_UPSERT, entries)
            if consumed:
                cur.many("UPDATE sagaway_signals SET consumed_at = ? WHERE id = ?", consumed)
            if events:
                cur.many(
                    "INSERT INTO sagaway_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)",
                    events,
                )
            if wakes:
                cur.wake()
            return bool(row[1])

        return self._write(work)

    def heartbeat(self, owner: str, run_ids: Sequence[str], lease_until: float) -> int:
        if not run_ids:
            return 0
        ids = list(run_ids)
        return self._write(
            lambda cur: (
                cur.execute(
                    "UPDATE sagaway_runs SET due_at = ? WHERE owner = ? "
                    f"AND id IN ({_marks(ids)}) AND status IN {_ACTIVE_SQL}",
                    (lease_until, owner, *ids),
                ).rowcount
            )
        )

    def owners(self) -> list[str]:
        rows = self._read(
            lambda cur: cur.all(
                "SELECT DISTINCT owner FROM sagaway_runs "
                f"WHERE owner IS NOT NULL AND status IN {_ACTIVE_SQL}"
            )
        )
        return [row[0] for row in rows]

    def expire_owner(self, owner: str, now: float) -> int:
        def work(cur: Cursorish) -> int:
            count = cur.execute(
                "UPDATE sagaway_runs SET due_at = ? "
                f"WHERE owner = ? AND status IN {_ACTIVE_SQL} AND due_at > ?",
                (now, owner, now),
            ).rowcount
            if count:
                cur.wake()
            return count

        return self._write(work)

    def queue_stats(self, now: float) -> tuple[int, float | None]:
        row = self._read(
            lambda cur: cur.one(
                "SELECT COUNT(*), MIN(due_at) FROM sagaway_runs WHERE due_at <= ?", (now,)
            )
        )
        return int(row[0]), None if row[1] is None else float(row[1])

    def next_due(self) -> float | None:
        row = self._read(
            lambda cur: cur.one("SELECT MIN(due_at) FROM sagaway_runs WHERE due_at IS NOT NULL")
        )
        return None if row is None or row[0] is None else float(row[0])

    # --- control -------------------------------------------------------------------------
    def _existing(self, cur: Cursorish, run_id: str) -> RunRecord:
        # Locked (PostgreSQL) so that a prune deleting the run cannot commit between this
        # read and the writes that follow: they would add signals or events to no run.
        row = cur.one(
            f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE id = ? {self.row_lock}", (run_id,)
        )
        if row is None:
            raise RunNotFound(run_id)
        return _run(row)

    def send_signal(self, run_id: str, name: str, payload: str, now: float) -> SignalRecord:
        def work(cur: Cursorish) -> SignalRecord:
            run = self._existing(cur, run_id)
            if run.status in SETTLED:
                raise InvalidRunState(
                    f"run {run_id} has ended ({run.status}): signals are kept only for runs "
                    "that can still wait for them"
                )
            row = cur.one(
                "INSERT INTO sagaway_signals (run_id, name, payload, sent_at) "
                "VALUES (?, ?, ?, ?) RETURNING id",
                (run_id, name, payload, now),
            )
            cur.execute(
                "UPDATE sagaway_runs SET wake_pending = 1, due_at = CASE "
                "WHEN status = 'waiting' AND wait_name = ? THEN ? ELSE due_at END WHERE id = ?",
                (name, now, run_id),
            )
            if run.status == RunStatus.WAITING and run.wait_name == name:
                cur.wake()
            return SignalRecord(row[0], run_id, name, payload, now)

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
            row = cur.one(
                "UPDATE sagaway_runs SET cancel_requested = 1, updated_at = ?, "
                "due_at = CASE WHEN status IN ('pending', 'waiting') THEN ? ELSE due_at END "
                f"WHERE id = ? RETURNING {RUN_COLUMNS}",
                (now, now, run_id),
            )
            cur.execute(
                "INSERT INTO sagaway_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)",
                (run_id, now, "cancel_requested", "{}"),
            )
            if run.status in (RunStatus.PENDING, RunStatus.WAITING):
                cur.wake()
            return _run(row)

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
                "INSERT INTO sagaway_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)",
                (run_id, now, "redriven", json.dumps({"status": status})),
            )
            cur.wake()

        self._write(work)

    def record_event(self, event: EventRecord) -> None:
        self._write(
            lambda cur: cur.execute(
                "INSERT INTO sagaway_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)",
                (event.run_id, event.at, event.kind, event.data),
            )
        )

    # --- state shared by all workers -------------------------------------------------------
    def read_shared(self, kind: str, name: str) -> tuple | None:
        table, columns = _SHARED[kind]
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
            row = cur.one(
                "SELECT state, until, version FROM sagaway_breakers WHERE name = ?", (name,)
            )
            return (row[0], float(row[1]), int(row[2]))

        return self._write(work)

    def update_bucket(self, name: str, change: Any) -> Any:
        def work(cur: Cursorish) -> Any:
            cur.execute(
                "INSERT INTO sagaway_limiters (name, tokens, stamp) VALUES (?, NULL, NULL) "
                "ON CONFLICT (name) DO NOTHING",
                (name,),
            )
            row = cur.one(
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
            # pruner holds are skipped (the claim's clause): it deletes them.
            ids = [
                row[0]
                for row in cur.all(
                    f"SELECT id FROM sagaway_runs WHERE status IN ({_marks(wanted)}) "
                    f"AND updated_at < ? LIMIT {batch} {self.lock_clause}",
                    (*wanted, ended_before),
                )
            ]
            if ids:
                for table in ("sagaway_journal", "sagaway_signals", "sagaway_events"):
                    cur.execute(f"DELETE FROM {table} WHERE run_id IN ({_marks(ids)})", ids)
                cur.execute(f"DELETE FROM sagaway_runs WHERE id IN ({_marks(ids)})", ids)
            return len(ids)

        deleted = 0
        while True:  # until a batch finds nothing: on PostgreSQL one may come back short
            count = self._write(work)
            if count == 0:
                return deleted
            deleted += count

    # --- metrics ----------------------------------------------------------------------------
    def add_metrics(self, rows: Sequence[tuple[str, str, int, int, float, float, float]]) -> None:
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
            oldest = self._read(lambda cur: cur.one("SELECT MIN(minute) FROM sagaway_metrics"))[0]
            if oldest is None or oldest >= before_minute:
                break
            upto = min(oldest + 1440, before_minute)
            deleted += self._write(
                lambda cur, upto=upto: (
                    cur.execute("DELETE FROM sagaway_metrics WHERE minute < ?", (upto,)).rowcount
                )
            )
        return deleted

    def metric_totals(self) -> list[tuple[str, str, int, float]]:
        rows = self._read(
            lambda cur: cur.all(
                "SELECT name, labels, SUM(count), SUM(total) FROM sagaway_metrics "
                "GROUP BY name, labels ORDER BY name, labels"
            )
        )
        return [(row[0], row[1], int(row[2]), float(row[3])) for row in rows]

    def metric_rows(
        self, name: str | None = None, since_minute: int = 0
    ) -> list[tuple[str, str, int, int, float, float, float]]:
        clause, params = "minute >= ?", [since_minute]
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


class _Retry(Exception):
    """A work function hit a database error inside a shared transaction."""
