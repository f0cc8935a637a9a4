"""The SQL both backends share: the plumbing under one implementation of the Store contract
over DB-API (the statements themselves are in `_sql_runs`, `_sql_claims`, `_sql_shared` and
`_sql_metrics`; `_sql.SqlStore` puts them together).

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

from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

from sagaway.errors import (
    LeaseLost,
    SagawayError,
    StoreUnavailable,
)
from sagaway.store._groupcommit import GroupCommit
from sagaway.store.base import (
    KEEP,
    EntryStatus,
    JournalEntry,
    NewRun,
    Phase,
    RunRecord,
    RunStatus,
    RunUpdate,
    Store,
)
from sagaway.store.flow import FlowControl

__all__ = [
    "ACTIVE_SQL",
    "EVENT_INSERT",
    "FLOW_COLUMNS",
    "JOURNAL_COLUMNS",
    "JOURNAL_CONFLICT",
    "JOURNAL_INSERT",
    "JOURNAL_MARKS",
    "JOURNAL_UPSERT",
    "RUN_COLUMNS",
    "SHARED_TABLES",
    "Cursorish",
    "DriverConnection",
    "DriverCursor",
    "RetryBatch",
    "Row",
    "SqlCore",
    "Statement",
    "flow_values",
    "journal_entry",
    "lease_lost",
    "makes_due",
    "marks",
    "run_record",
]

R = TypeVar("R")
# A row as both drivers return it (sqlite3 and psycopg's default row factory): a tuple.
Row = tuple[Any, ...]

RUN_COLUMNS = (
    "id, saga, idem_key, input, input_hash, status, created_at, updated_at, due_at, owner, "
    "epoch, wait_name, wait_position, wait_deadline, pivot_passed, cancel_requested, result, "
    "error, recoveries, parent_id, trace_context, flow_key, flow_limit, priority, flow_held, "
    "flow_queued_at"
)
# What `start` stores of a run's flow control: a new run under a limit joins its key's queue
# at once (and is due: the claim that looks at it admits the queue's first runs).
FLOW_COLUMNS = "flow_key, flow_limit, priority, flow_queued_at"
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
JOURNAL_UPSERT = f"{JOURNAL_INSERT}VALUES ({JOURNAL_MARKS}) {JOURNAL_CONFLICT}"
EVENT_INSERT = "INSERT INTO sagaway_events (run_id, at, kind, data) VALUES (?, ?, ?, ?)"
ACTIVE_SQL = "('running', 'compensating')"
SHARED_TABLES = {
    "breaker": ("sagaway_breakers", "state, until, version"),
    "limiter": ("sagaway_limiters", "tokens, stamp"),
}


def run_record(row: Sequence[Any]) -> RunRecord:
    """A `sagaway_runs` row (RUN_COLUMNS) as a record."""
    values: list[Any] = list(row[:21])
    values[5] = RunStatus(values[5])
    values[14] = bool(values[14])
    values[15] = bool(values[15])
    key, limit, priority, held, queued_at = row[21:26]
    # `flow` follows `trace_context`
    values.append(
        None if limit is None else FlowControl(key, limit, priority, bool(held), queued_at)
    )
    return RunRecord(*values)


def flow_values(new: NewRun) -> tuple[str | None, int | None, int, float | None]:
    """The values of FLOW_COLUMNS for a new run."""
    flow = new.flow
    return (None, None, 0, None) if flow is None else (flow.key, flow.limit, flow.priority, new.now)


def journal_entry(row: Sequence[Any]) -> JournalEntry:
    """A `sagaway_journal` row (JOURNAL_COLUMNS) as an entry."""
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


def marks(values: Sequence[Any]) -> str:
    """As many `?` placeholders as `values`, comma-separated."""
    return ", ".join("?" * len(values))


class Statement(Generic[R]):
    """A write of one statement whose first row goes to `finish(row, cursor)`, which may
    read further and returns the write's value (or raises a domain error, when the statement
    wrote nothing). An `idempotent` one may be sent again after a lost connection."""

    __slots__ = ("finish", "idempotent", "params", "sql")

    def __init__(
        self,
        sql: str,
        params: Sequence[Any],
        finish: Callable[[Row | None, Cursorish], R],
        idempotent: bool = False,
    ) -> None:
        self.sql, self.params, self.finish, self.idempotent = sql, params, finish, idempotent

    def __call__(self, cur: Cursorish) -> R:
        return self.finish(cur.one(self.sql, self.params), cur)


class DriverCursor(Protocol):
    """What the shared SQL uses of a driver's cursor (sqlite3's or psycopg's)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> object: ...


class DriverConnection(Protocol):
    """What the shared SQL uses of a connection: a sqlite3 connection, or the PostgreSQL
    backend's session over a psycopg one."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> DriverCursor: ...

    def cursor(self) -> DriverCursor: ...


class Cursorish:
    """The few DB-API calls the shared SQL uses, over one connection in a transaction."""

    def __init__(self, connection: DriverConnection, convert: Callable[[str], str]) -> None:
        self.connection = connection
        self._convert = convert
        self.woke = False

    def wake(self) -> None:
        """Note that this transaction makes a run due (or moves a timer)."""
        self.woke = True

    def execute(self, sql: str, params: Sequence[Any] = ()) -> DriverCursor:
        return self.connection.execute(self._convert(sql), params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The statement's first row, or None when it gave none."""
        return self.execute(sql, params).fetchone()

    def only(self, sql: str, params: Sequence[Any] = ()) -> Row:
        """The row of a statement that always gives one: an aggregate, or a RETURNING or
        read of a row this transaction knows exists."""
        row = self.one(sql, params)
        if row is None:
            raise RuntimeError(f"no row from a statement that always gives one: {sql}")
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.execute(sql, params).fetchall()

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cursor = self.connection.cursor()
            cursor.executemany(self._convert(sql), rows)


class SqlCore(Store):
    """Store contract over SQL: the plumbing every statement uses; backends provide
    connections and dialect hooks."""

    lock_clause = ""  # appended to the claim's SELECT (PostgreSQL: FOR UPDATE SKIP LOCKED)
    # Reads a run's fence inside a write transaction. SQLite's write transactions exclude
    # each other; PostgreSQL adds FOR SHARE so that no claim can commit before we do.
    _fence_sql = "SELECT epoch, cancel_requested FROM sagaway_runs WHERE id = ?"
    row_lock = ""  # locks a row read inside a write transaction (PostgreSQL: FOR UPDATE)
    read_only = False  # opened with read_only=True: every write is refused

    def __init__(self) -> None:
        self._group: GroupCommit[Cursorish] = GroupCommit(
            self._run_batch, closed=lambda: StoreUnavailable(f"the store {self.url} is closed")
        )

    # --- backend hooks -------------------------------------------------------------------
    @abstractmethod
    def _convert(self, sql: str) -> str:
        """Rewrite `?` placeholders into the driver's style."""

    @abstractmethod
    @contextmanager
    def _write_transaction(self) -> Iterator[DriverConnection]:
        """Yield a connection inside a write transaction; commit on exit, roll back on error."""

    @abstractmethod
    @contextmanager
    def _read_connection(self) -> Iterator[DriverConnection]:
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
        except RetryBatch:
            return self._run_each(works)

    def _run_each(self, works: list[Callable[[Cursorish], Any]]) -> list[tuple[bool, Any]]:
        """A batch hit a database error mid-way: run each write alone so only it fails."""
        outcomes: list[tuple[bool, Any]] = []
        for work in works:
            try:
                with self._write_transaction() as conn:
                    cur = Cursorish(conn, self._convert)
                    value = work(cur)
                    if cur.woke:
                        self._announce(cur)
                # Only once committed: a commit that fails is this write's one outcome.
                outcomes.append((True, value))
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
            raise RetryBatch from exc

    def _write(self, work: Callable[[Cursorish], R]) -> R:
        if self.read_only:
            raise StoreUnavailable(
                f"the store {self.url} was opened read-only: open it with open_store(url) "
                "to change it"
            )
        return self._group.submit(work)

    def _read(self, work: Callable[[Cursorish], R]) -> R:
        with self._read_connection() as conn:
            return work(Cursorish(conn, self._convert))

    def journals(self, run_ids: Sequence[str]) -> dict[str, list[JournalEntry]]:
        found: dict[str, list[JournalEntry]] = {run_id: [] for run_id in run_ids}
        if not found:
            return found
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT run_id, {JOURNAL_COLUMNS} FROM sagaway_journal "
                f"WHERE run_id IN ({marks(run_ids)}) ORDER BY run_id, phase, position",
                list(run_ids),
            )
        )
        for row in rows:
            found[row[0]].append(journal_entry(row[1:]))
        return found

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(transactions, writes) committed through group commit so far."""
        return self._group.batches, self._group.writes


class RetryBatch(Exception):
    """A work function hit a database error inside a shared transaction."""
