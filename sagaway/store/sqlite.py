"""The SQLite backend: the embedded default, one file, WAL, fsync'd commits by default.

Durability is explicit: `synchronous=FULL` (default) makes every commit survive power
loss; `NORMAL` (opt-in) survives a crash of the process but may lose the last commits on
power loss, in exchange for commits that cost no fsync. Several processes may share one
file: SQLite's write lock serialises their transactions, and leases keep any run executed
by one worker at a time.

`read_only=True` opens the file as SQLite's read-only mode does: nothing is written to it,
no write lock is ever taken, and a file without this sagaway's schema is refused.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from urllib.parse import quote

from sagaway.errors import ConfigurationError, StoreUnavailable
from sagaway.store import migrations
from sagaway.store._outage import Outage
from sagaway.store._sql import SqlStore
from sagaway.store._sql_core import Cursorish
from sagaway.store._sql_messages import insert_messages
from sagaway.store.messages import NewMessage

__all__ = ["SqliteStore"]

log = logging.getLogger("sagaway")

SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


# What to do about errors that make the file unusable until something outside changes:
# they become StoreUnavailable (the engine hands runs back and retries), said once.
_UNAVAILABLE = {
    "SQLITE_FULL": "free space on the disk that holds it",
    "SQLITE_IOERR": "the disk failed to read or write: check it, and the free space on it",
    "SQLITE_READONLY": "make the file, and the folder that holds it, writable for this process",
    "SQLITE_CANTOPEN": "check that the file and the folder that holds it can be opened",
}


def _unusable(exc: BaseException) -> str | None:
    """What to do, when `exc` is one of the errors above; else None."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, hint in _UNAVAILABLE.items():
        if name.startswith(prefix):
            return hint
    return None


# RETURNING arrived in SQLite 3.35.
MINIMUM_SQLITE = (3, 35, 0)
# Idle reader connections kept for reuse; more are opened when needed and closed after.
READERS_KEPT = 8

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: opening there relies on busy waits
    fcntl = None  # type: ignore[assignment]  # None marks a platform without flock


@contextmanager
def _setup_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` while one process sets the file up.

    Switching a new file to WAL can fail at once with "database is locked" when another
    process does the same (SQLite gives up without its busy wait there), so processes
    opening a file together take turns. Without a lock file (read-only directory, no
    flock), opening goes ahead unguarded.
    """
    handle = None
    if fcntl is not None:
        with suppress(OSError):
            handle = open(f"{path}.lock", "a")  # noqa: SIM115 - held across the yield
    try:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        if handle is not None:
            handle.close()  # releases the lock


class SqliteStore(SqlStore):
    """A Store in one SQLite file, safe for many threads and many processes."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        create: bool = True,
        read_only: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        if sqlite3.sqlite_version_info < MINIMUM_SQLITE:
            raise StoreUnavailable(
                f"sagaway needs SQLite {'.'.join(map(str, MINIMUM_SQLITE))} or newer; this "
                f"Python links SQLite {sqlite3.sqlite_version}: use a newer Python build"
            )
        level = synchronous.upper()
        if level not in SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous={synchronous!r} is not a durability level sagaway supports: "
                f"use one of {', '.join(SYNCHRONOUS)}"
            )
        if (read_only or not create) and not os.path.isfile(path):
            raise StoreUnavailable(
                f"no sagaway database at {path!r}: pass the right path (--db or $SAGAWAY_DB), "
                "or start an App on it first to create it"
            )
        self.path = path
        self.url = f"sqlite:///{path}"
        self.synchronous = level
        self.read_only = read_only
        self._busy_timeout = busy_timeout
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._reads_done = threading.Condition(self._readers_lock)
        self._reading = 0
        self._closed = False
        self._writer: sqlite3.Connection | None = None
        self._outage = Outage(f"SQLite at {path}")
        if read_only or not create:
            # Looked at through a read-only connection first: a file of another application
            # is refused before anything (even the switch to WAL) is written to it.
            probe = self._connect(read_only=True)
            try:
                self._check(probe, read_only)
            finally:
                probe.close()
        if not read_only:
            with _setup_lock(path):
                self._writer = self._connect()
                try:
                    self._migrate(create)
                except BaseException:
                    self._writer.close()
                    raise
        super().__init__()

    def _fail(self, exc: sqlite3.Error) -> StoreUnavailable:
        return StoreUnavailable(f"cannot open {self.path!r} as a sagaway SQLite database: {exc}")

    def _check(self, conn: sqlite3.Connection, exact: bool) -> None:
        """Refuse a file without sagaway's schema (`exact`: without this sagaway's)."""
        where = repr(self.path)
        try:
            if exact:
                migrations.check(conn, "sqlite", where)
            elif migrations.stored_version(conn, "sqlite", where) is None:
                raise migrations.no_schema(where)
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc

    @property
    def description(self) -> str:
        return (
            f"SQLite {sqlite3.sqlite_version} at {self.path} (WAL, synchronous={self.synchronous})"
        )

    def _connect(self, read_only: bool | None = None) -> sqlite3.Connection:
        """A connection to the file; the writer's also switches the file to WAL (once set,
        it stays), read-only ones cannot write to it at all."""
        read_only = self.read_only if read_only is None else read_only
        try:
            if read_only:
                conn = sqlite3.connect(
                    f"file:{quote(self.path)}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._busy_timeout,
                )
            else:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._busy_timeout,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc
        return conn

    def _migrate(self, create: bool) -> None:
        conn = self._writer
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                migrations.apply(conn, "sqlite", repr(self.path), create=create)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise self._fail(exc) from exc

    def schema_version(self) -> int:
        """The schema version recorded in the file."""
        row = self._read(
            lambda cur: cur.only("SELECT value FROM sagaway_meta WHERE key = 'schema_version'")
        )
        return int(row[0])

    def _convert(self, sql: str) -> str:
        return sql

    def publish_in(self, connection: object, messages: Sequence[NewMessage]) -> None:
        if not isinstance(connection, sqlite3.Connection):
            raise ConfigurationError(
                f"publish(conn=...) takes a sqlite3 connection to {self.path!r} for this "
                f"App's SQLite store, got {type(connection).__module__}."
                f"{type(connection).__qualname__}"
            )
        files = [row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"]
        if not files or os.path.realpath(files[0]) != os.path.realpath(self.path):
            raise ConfigurationError(
                f"publish(conn=...): the connection is to {files[0] if files else 'no file'!r}, "
                f"not to this App's store {self.path!r}: the message can only commit with "
                "your transaction on the same database file"
            )
        insert_messages(Cursorish(connection, self._convert), messages)

    def _unavailable(self, exc: BaseException) -> BaseException:
        """`exc`, or the StoreUnavailable it means (a full disk, say), logged once."""
        hint = _unusable(exc)
        if hint is None:
            return exc
        cause = f"{exc} ({exc.sqlite_errorname})"  # type: ignore[attr-defined]
        self._outage.failed(cause)
        return StoreUnavailable(
            f"cannot write to the SQLite database {self.path!r}: {cause}: {hint} (workers "
            "keep trying; runs resume once it can be written again)"
        )

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._writer
        assert conn is not None, "SqlStore._write refuses writes to a read-only store"
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (I/O error)
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            error = self._unavailable(exc)
            if error is exc:
                raise
            raise error from exc
        self._outage.ok()

    @contextmanager
    def _read_connection(self) -> Iterator[sqlite3.Connection]:
        with self._readers_lock:
            if self._closed:
                raise StoreUnavailable(f"the store on {self.path!r} is closed")
            self._reading += 1
            conn = self._idle_readers.pop() if self._idle_readers else None
        try:
            if conn is None:
                conn = self._connect()
            yield conn
        finally:
            with self._readers_lock:
                self._reading -= 1
                if conn is not None and not self._closed and len(self._idle_readers) < READERS_KEPT:
                    self._idle_readers.append(conn)
                    conn = None
                self._reads_done.notify_all()
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Wait for reads and writes under way, then close every connection."""
        with self._readers_lock:
            if self._closed:
                return
            self._closed = True
            self._reads_done.wait_for(lambda: self._reading == 0, 10.0)
            readers, self._idle_readers = self._idle_readers, []
        self._group.close()
        for conn in readers:
            conn.close()
        if self._writer is not None:
            self._writer.close()
