"""The PostgreSQL backend: many worker processes, on many machines, share one database.

    postgresql://user[:password]@host[:port]/database?schema=shop&pool_size=4

Options (`_postgres_url`): `schema` (default `sagaway`) holds every sagaway table; the
connection budget is `pool_size` pooled connections (default 4) plus one for LISTEN (unless
`listen=off`); a caller that finds the pool busy waits `pool_timeout` seconds (default 10),
then gets `ConnectionBudgetExhausted`, never hangs.

Workers claim due runs with `SELECT ... FOR UPDATE SKIP LOCKED` (and a key's slots under an
advisory lock, `_sql_flow`). A checkpoint reads its run's epoch `FOR SHARE` in its own
statement (or updates the row `WHERE epoch = ...`): no claim, which bumps the epoch, can
commit between that check and the checkpoint's commit, so a worker that lost its lease
cannot write. Sessions end a transaction left idle for 10 s, so a paused or cut-off worker
never holds row locks for long. Writes that make runs due send NOTIFY (`_postgres_notify`)."""

from __future__ import annotations

import functools
import itertools
import logging
import re
import select
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sagaway.errors import (
    ConfigurationError,
    ConnectionBudgetExhausted,
    MissingExtra,
    SagawayError,
    StoreUnavailable,
)

try:
    import psycopg
    from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout
except ImportError as exc:
    raise MissingExtra("postgres", "PostgreSQL support", exc) from None
from sagaway.store import migrations
from sagaway.store._outage import Outage
from sagaway.store._postgres_clock import ServerClock
from sagaway.store._postgres_messages import PostgresMessages, publish_clauses
from sagaway.store._postgres_notify import WakeListener
from sagaway.store._postgres_url import PostgresSettings, parse_url
from sagaway.store._sql import SqlStore
from sagaway.store._sql_core import (
    JOURNAL_CONFLICT,
    JOURNAL_INSERT,
    JOURNAL_MARKS,
    Cursorish,
    RetryBatch,
    Statement,
    lease_lost,
    makes_due,
)
from sagaway.store._sql_messages import insert_messages
from sagaway.store.base import Checkpoint
from sagaway.store.messages import NewMessage

__all__ = ["PostgresSettings", "PostgresStore", "parse_url"]

_TABLES = re.compile(r"\b(sagaway_\w+)\b")
R = TypeVar("R")


def _one_line(error: BaseException) -> str:
    """The driver's message on one line (libpq's span several, with tabs)."""
    return " ".join(str(error).split())


class _SagawayConnection(psycopg.Connection):
    """The connections of sagaway's pools (each store tracks its own: `_tracked_connection`)."""


class _QuietPool(logging.Filter):
    """psycopg_pool warns at every failed attempt to (re)connect and every dead connection
    it discards, psycopg at every pipeline cut off; for sagaway's connections the store's
    `Outage` says it once instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        what = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if isinstance(what, _SagawayConnection):
            return False
        if isinstance(getattr(what, "_conn", None), _SagawayConnection):
            return False  # a pipeline of ours, cut off: the error is raised to the store too
        return not (
            isinstance(what, str)
            and what.startswith("sagaway-")
            and record.msg.startswith("error connecting in")
        )


logging.getLogger("psycopg.pool").addFilter(_QuietPool())
logging.getLogger("psycopg").addFilter(_QuietPool())


def _tracked_connection(outage: Outage) -> type[psycopg.Connection]:
    """A connection class whose failures to connect tell `outage` (the pool connects in
    its own threads, with backoff: this is how the store learns that the server is gone)."""

    class TrackedConnection(_SagawayConnection):
        @classmethod
        def connect(cls, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().connect(*args, **kwargs)
            except psycopg.Error as exc:
                outage.failed(_one_line(exc))
                raise

    return TrackedConnection


class _Session:
    """A connection as the shared SQL sees it, with one cursor kept for all its statements
    (a new cursor per statement costs a third of the statement's work in Python)."""

    __slots__ = ("_cursor", "connection")

    def __init__(self, connection: psycopg.Connection) -> None:
        self.connection = connection
        self._cursor = connection.cursor()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self._cursor.execute(sql, params)

    def cursor(self) -> psycopg.Cursor:
        return self.connection.cursor()


class _Disconnected(Exception):
    """A read found its pooled connection dead (server restart, idle timeout, network)."""


class PostgresStore(PostgresMessages, SqlStore):
    """A Store in one PostgreSQL schema, shared by any number of worker processes.

    Keyword options override the URL's (see the module's docstring); `create=False` refuses
    a schema without sagaway's tables instead of creating them; `read_only=True` also
    writes nothing at all (not even a migration) and refuses every write. Raises
    StoreUnavailable when the server cannot be reached or the schema cannot be set up,
    SchemaVersionError for a schema written by a newer sagaway, ConfigurationError for a
    bad URL.
    """

    lock_clause = "FOR UPDATE SKIP LOCKED"
    _fence_sql = SqlStore._fence_sql + " FOR SHARE"
    row_lock = "FOR UPDATE"
    _group_lock_sql = "LOCK TABLE sagaway_messages IN SHARE MODE"
    flow_locks = ("SELECT pg_advisory_xact_lock(?)", "SELECT pg_try_advisory_xact_lock(?)")

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int | None = None,
        pool_timeout: float | None = None,
        listen: bool | None = None,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.settings = parse_url(
            url, schema=schema, pool_size=pool_size, pool_timeout=pool_timeout, listen=listen
        )
        self.url = url
        self._sql: dict[str, str] = {}
        self._closed = False
        self._listener: WakeListener | None = None
        self._listener_lock = threading.Lock()
        self.read_only = read_only
        self._clock = ServerClock(f"PostgreSQL at {self.settings.where}")
        self._server, self._synchronous = self._migrate(create and not read_only)
        self._outage = Outage(f"PostgreSQL at {self.settings.where}")
        self._pool: ConnectionPool = ConnectionPool(
            self.settings.conninfo,
            connection_class=_tracked_connection(self._outage),
            kwargs={"autocommit": True},
            min_size=1,
            max_size=self.settings.pool_size,
            timeout=self.settings.pool_timeout,
            name=f"sagaway-{self.settings.schema}",
            num_workers=2,
            open=True,
        )
        self._notify_sql = f'NOTIFY "{self.settings.channel}"'
        self.wake_channel = self.settings.channel
        super().__init__()
        self._clock.keep_in_sync(lambda sql: self._read(lambda cur: cur.only(sql)[0]))

    @property
    def description(self) -> str:
        s = self.settings
        listen = " + 1 for LISTEN" if s.listen else " (no LISTEN: workers poll)"
        return (
            f"PostgreSQL {self._server} at {s.where}, schema {s.schema} "
            f"(synchronous_commit={self._synchronous}; connections: pool of "
            f"{s.pool_size}{listen})"
        )

    # --- schema --------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.settings.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self.settings.where}: {_one_line(exc)} "
                "(check the URL, that the server runs and accepts this user, and that the "
                "database exists: createdb NAME)"
            ) from None

    def _migrate(self, create: bool) -> tuple[str, str]:
        schema = self.settings.schema
        where = f"schema {schema!r} at {self.settings.where}"
        with self._connect() as conn:
            try:
                with conn.transaction():
                    self._migrate_in(conn, create, where)
            except psycopg.errors.InsufficientPrivilege as exc:
                raise StoreUnavailable(
                    f"cannot set up schema {schema!r} at {self.settings.where}: "
                    f"{_one_line(exc)} (have it created for this user, e.g. CREATE SCHEMA "
                    f"{schema} AUTHORIZATION {conn.info.user}, or grant CREATE)"
                ) from None
            except psycopg.Error as exc:
                raise StoreUnavailable(
                    f"cannot set up schema {schema!r} at {self.settings.where}: {_one_line(exc)}"
                ) from None
            shown = conn.execute("SHOW synchronous_commit").fetchone()
            synchronous = "?" if shown is None else shown[0]
            self._clock.sync(lambda sql: Cursorish(conn, self._convert).only(sql)[0], first=True)
            return conn.info.parameter_status("server_version") or "?", synchronous

    def _migrate_in(self, conn: psycopg.Connection, create: bool, where: str) -> None:
        """Inside `conn`'s transaction: check (read-only) or set up the schema."""
        schema = self.settings.schema
        if not self.read_only:  # processes starting together migrate one at a time
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"sagaway:{schema}".encode()),)
            )
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if not exists and not create:
            raise StoreUnavailable(
                f"no sagaway schema {schema!r} at {self.settings.where}: check schema= in the "
                "URL (--db or $SAGAWAY_DB), or start an App on it first to create it"
            )
        if not exists:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET LOCAL search_path TO "{schema}"')
        if self.read_only:
            migrations.check(conn, "postgres", where)
        else:
            migrations.apply(conn, "postgres", where, "%s", create=create)

    def now(self) -> float:
        """Seconds since the epoch by the server's clock (`_postgres_clock`)."""
        return self._clock.now()

    def schema_version(self) -> int:
        """The schema version recorded in the store's schema."""
        row = self._read(
            lambda cur: cur.only("SELECT value FROM sagaway_meta WHERE key = 'schema_version'")
        )
        return int(row[0])

    # --- connections ---------------------------------------------------------------------
    def publish_in(self, connection: object, messages: Sequence[NewMessage]) -> None:
        if not isinstance(connection, psycopg.Connection):
            raise ConfigurationError(
                "publish(conn=...) takes a psycopg connection to this App's PostgreSQL "
                f"database, got {type(connection).__module__}.{type(connection).__qualname__}"
            )
        # The caller's search_path is theirs: name sagaway's tables with their schema.
        schema = self.settings.schema

        def convert(sql: str) -> str:
            return self._convert(_TABLES.sub(rf'"{schema}".\1', sql))

        cur = Cursorish(connection, convert)
        insert_messages(cur, messages)
        if cur.woke:
            connection.execute(self._notify_sql)  # delivered when the caller commits

    def _convert(self, sql: str) -> str:
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = sql.replace("?", "%s")
        return converted

    def _get(self, timeout: float | None = None) -> psycopg.Connection:
        if self._closed:
            raise StoreUnavailable(f"the store on {self.settings.where} is closed")
        wait = self.settings.pool_timeout if timeout is None else max(0.0, timeout)
        try:
            return self._pool.getconn(wait)
        except PoolTimeout:
            raise self._pool_timeout_error(wait) from None
        except PoolClosed:
            raise StoreUnavailable(f"the store on {self.settings.where} is closed") from None

    def _pool_timeout_error(self, waited: float) -> StoreUnavailable:
        s = self.settings
        stats = self._pool.get_stats()
        if self._outage.since is not None:  # the pool's attempts to connect are failing
            return self._unavailable(
                f"no connection to PostgreSQL at {s.where} within {waited:g} s: "
                f"{self._outage.cause} (sagaway keeps trying)",
                self._outage.cause,
            )
        if stats.get("pool_size", 0) >= s.pool_size:
            return ConnectionBudgetExhausted(
                f"all {s.pool_size} connections of sagaway's pool to {s.where} stayed busy "
                f"for {waited:g} s (pool_size={s.pool_size}, pool_timeout={s.pool_timeout:g}): "
                f"raise pool_size in the store URL (this process then uses up to "
                f"pool_size{' + 1' if s.listen else ''} connections), lower the worker's "
                "concurrency, or look for slow queries holding connections"
            )
        return StoreUnavailable(
            f"no connection to PostgreSQL at {s.where} within {waited:g} s: the server is down, "
            "unreachable or out of connections (max_connections); sagaway keeps trying"
        )

    def _release_connection(self, conn: psycopg.Connection) -> None:
        if not conn.closed:  # it was used and answered: the database is there
            self._outage.ok()
        try:
            self._pool.putconn(conn)
        except PoolClosed:
            conn.close()

    def _connection(self, deadline: float | None = None) -> psycopg.Connection:
        """A pooled connection the server has not closed. An idle connection has nothing to
        read unless the server ended it (restart, terminate, idle timeout): such a one is
        dropped and the next one taken, without a round trip."""
        if deadline is None:
            deadline = time.monotonic() + self.settings.pool_timeout
        for attempt in itertools.count():
            conn = self._get(deadline - time.monotonic())
            readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
            if not readable:
                return conn
            conn.close()
            self._release_connection(conn)  # the pool replaces closed connections
            if not self._pause_before_retry(attempt, deadline):
                raise self._unavailable(
                    f"lost the connection to PostgreSQL at {self.settings.where}, and no "
                    f"live one came back within {self.settings.pool_timeout:g} s",
                    "connections closed by the server",
                )
        raise AssertionError("unreachable")

    def _begin(self) -> psycopg.Connection:
        """A pooled connection inside a fresh transaction. A connection found dead before
        anything was sent is replaced (nothing can have been applied), for up to
        `pool_timeout` seconds."""
        deadline = time.monotonic() + self.settings.pool_timeout
        for attempt in itertools.count():
            conn = self._connection(deadline)
            try:
                conn.execute("BEGIN")
                return conn
            except psycopg.OperationalError as exc:
                self._release_connection(conn)  # the pool drops it if broken
                if not self._pause_before_retry(attempt, deadline):
                    raise self._unavailable(
                        f"lost the connection to PostgreSQL at {self.settings.where}: "
                        f"{_one_line(exc)}",
                        _one_line(exc),
                    ) from None
        raise AssertionError("unreachable")

    def _unavailable(self, message: str, cause: str) -> StoreUnavailable:
        """The error of a call that found no working connection within `pool_timeout`;
        the outage is logged once."""
        self._outage.failed(cause)
        return StoreUnavailable(message)

    @staticmethod
    def _pause_before_retry(attempt: int, deadline: float) -> bool:
        """After a dead connection: try the next at once (the pool holds others, or opens
        one), backing off only when failures go on. False once `deadline` has passed."""
        delay = 0.0 if attempt < 3 else min(0.5, 0.01 * 2 ** (attempt - 3))
        if time.monotonic() + delay >= deadline:
            return False
        time.sleep(delay)
        return True

    @contextmanager
    def _write_transaction(self) -> Iterator[_Session]:
        conn = self._begin()
        try:
            try:
                yield _Session(conn)
            except BaseException as exc:
                if not conn.broken:
                    try:
                        conn.execute("ROLLBACK")
                    except psycopg.Error:
                        pass
                if conn.broken and isinstance(exc, psycopg.Error):
                    raise StoreUnavailable(
                        f"lost the connection to PostgreSQL at {self.settings.where} in the "
                        f"middle of a transaction, which was not applied: {_one_line(exc)}"
                    ) from exc
                raise
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                if conn.broken:
                    raise StoreUnavailable(
                        f"lost the connection to PostgreSQL at {self.settings.where} while "
                        f"committing: the write may or may not have been applied ({_one_line(exc)})"
                    ) from exc
                raise
        finally:
            self._release_connection(conn)

    def _run_batch(self, works: list[Callable[[Cursorish], Any]]) -> list[tuple[bool, Any]]:
        if len(works) == 1 and isinstance(works[0], Statement):
            return [self._run_alone(works[0])]
        if sum(isinstance(work, Statement) for work in works) < 2:
            return super()._run_batch(works)
        try:
            return self._run_pipelined(works)
        except RetryBatch:
            return self._run_each(works)

    def _run_alone(self, work: Statement[Any]) -> tuple[bool, Any]:
        """A lone write of one statement is a transaction by itself: no BEGIN, no COMMIT,
        one round trip. On a lost connection an idempotent one is sent again; any other
        fails with StoreUnavailable (it may or may not have been applied)."""
        deadline = time.monotonic() + self.settings.pool_timeout
        for attempt in itertools.count():
            conn = self._connection(deadline)
            cur = Cursorish(_Session(conn), self._convert)
            try:
                value = work(cur)
            except SagawayError as exc:
                return False, exc
            except psycopg.OperationalError as exc:
                if not conn.broken:
                    return False, exc
                if not work.idempotent:
                    return False, StoreUnavailable(
                        f"lost the connection to PostgreSQL at {self.settings.where} while "
                        f"writing: the write may or may not have been applied ({_one_line(exc)})"
                    )
                if not self._pause_before_retry(attempt, deadline):
                    return False, self._unavailable(
                        f"lost the connection to PostgreSQL at {self.settings.where}: "
                        f"{_one_line(exc)}",
                        _one_line(exc),
                    )
                continue
            except psycopg.Error as exc:
                return False, exc
            finally:
                self._release_connection(conn)
            if cur.woke:  # after the commit, which is all NOTIFY promises anyway
                try:
                    self._read(self._announce)
                except (psycopg.Error, StoreUnavailable):
                    pass  # a lost wake-up costs one fallback poll
            return True, value
        raise AssertionError("unreachable")

    @contextmanager
    def _read_connection(self) -> Iterator[_Session]:
        conn = self._connection()
        try:
            yield _Session(conn)
        except psycopg.OperationalError as exc:
            if conn.broken:
                raise _Disconnected() from exc
            raise
        finally:
            self._release_connection(conn)

    def _read(self, work: Callable[[Cursorish], R]) -> R:
        # Reads have no effect: one on a dead connection is simply tried again on another.
        deadline = time.monotonic() + self.settings.pool_timeout
        for attempt in itertools.count():
            try:
                return super()._read(work)
            except _Disconnected as lost:
                if not self._pause_before_retry(attempt, deadline):
                    cause = _one_line(lost.__cause__ or lost)
                    raise self._unavailable(
                        f"lost the connection to PostgreSQL at {self.settings.where}: {cause}",
                        cause,
                    ) from None
        raise AssertionError("unreachable")

    # --- checkpoints -----------------------------------------------------------------------
    def checkpoint(self, cp: Checkpoint) -> bool:
        """The common checkpoint (one journal line, perhaps a change of the run row) as one
        statement: the fence (a row lock, or the fenced UPDATE) in a WITH clause and the
        journal line inserted only from its row. Each statement costs a round trip, and
        most checkpoints are this one."""
        if len(cp.entries) != 1 or cp.consumed or cp.events or cp.release_slot:
            return super().checkpoint(cp)
        params: list[Any]
        if cp.update is None:
            fence, params = self._fence_sql, [cp.run_id]
        else:
            fence, params = self._run_update(cp, cp.update)
        run_id, epoch = cp.run_id, cp.epoch
        params = [*params, run_id, *cp.entries[0], epoch]
        journal = (
            f"{JOURNAL_INSERT}SELECT {JOURNAL_MARKS} FROM fence WHERE fence.epoch = ? "
            f"{JOURNAL_CONFLICT}"
        )
        if cp.messages:
            # A step's messages ride in the same statement, so that publishing adds no round
            # trip: inserted only from the journal line's row (the fence held), each handed to
            # its topic's groups. Ids are derived from the step, so a re-sent statement
            # stores nothing twice.
            publish, values = publish_clauses(cp.messages, "WHERE EXISTS (SELECT 1 FROM journal)")
            notify, channel = self.notify_if_delivered()
            sql = (
                f"WITH fence AS ({fence}), journal AS ({journal} RETURNING 1), {publish}"
                f"SELECT (SELECT cancel_requested FROM fence), {notify} FROM journal"
            )
            params += values + channel
        else:
            sql = (
                f"WITH fence AS ({fence}) {journal} RETURNING (SELECT cancel_requested FROM fence)"
            )
        wakes = makes_due(cp.update)

        def finish(row: Any, cur: Cursorish) -> bool:
            if row is None:  # the fence matched no row: nothing was written
                raise lease_lost(run_id, epoch)
            if wakes:
                cur.wake()
            return bool(row[0])

        return self._write(Statement(sql, params, finish, idempotent=True))

    def _run_pipelined(self, works: list[Callable[[Cursorish], Any]]) -> list[tuple[bool, Any]]:
        """One transaction for the batch, in which the one-statement writes are sent all at
        once (pipeline mode) and their results read together; the other writes follow one
        by one. A batch then costs a few round trips, not one per write."""
        with self._write_transaction() as session:
            cur = Cursorish(session, self._convert)
            conn = session.connection
            sent: list[tuple[Statement[Any], psycopg.Cursor]] = []
            try:
                with conn.pipeline():
                    for work in works:
                        if isinstance(work, Statement):
                            result = conn.cursor().execute(self._convert(work.sql), work.params)
                            sent.append((work, result))
            except psycopg.Error as exc:
                raise RetryBatch from exc
            outcomes: dict[int, tuple[bool, Any]] = {}
            for work, result in sent:
                row = result.fetchone()
                outcomes[id(work)] = self._attempt(functools.partial(work.finish, row), cur)
            for work in works:
                if not isinstance(work, Statement):
                    outcomes[id(work)] = self._attempt(work, cur)
            if cur.woke:
                self._announce(cur)
            return [outcomes[id(work)] for work in works]

    # --- wake-ups ------------------------------------------------------------------------
    def _announce(self, cur: Cursorish) -> None:
        cur.execute(self._notify_sql)

    def on_wake(self, callback: Callable[[], None]) -> Callable[[], None] | None:
        if not self.settings.listen or self._closed:
            return None
        with self._listener_lock:
            if self._listener is None:
                listener = WakeListener(
                    self.settings.conninfo,
                    self.settings.channel,
                    self.settings.where,
                    self._outage,
                )
                listener.start()
                self._listener = listener
        return self._listener.subscribe(callback)

    # --- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Wait for writes under way, stop listening and close every connection."""
        if self._closed:
            return
        self._group.close()
        self._closed = True
        self._clock.stop()
        if self._listener is not None:
            self._listener.stop()
        self._pool.close(timeout=5.0)
