"""The SQLite backend: the embedded default, one file, WAL, fsync'd commits by default.

Durability is explicit: `synchronous=FULL` (default) makes every commit survive power
loss; `NORMAL` (opt-in) survives a crash of the process but may lose the last commits on
power loss, in exchange for commits that cost no fsync. Several processes may share one
file: SQLite's write lock serialises their transactions, and leases keep any run executed
by one worker at a time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sagaway.errors import ConfigurationError, StoreUnavailable
from sagaway.store import migrations
from sagaway.store.sql import SqlStore

__all__ = ["SqliteStore"]

log = logging.getLogger("sagaway")

SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


# RETURNING arrived in SQLite 3.35.
MINIMUM_SQLITE = (3, 35, 0)
# Idle reader connections kept for reuse; more are opened when needed and closed after.
READERS_KEPT = 8


class SqliteStore(SqlStore):
    """A Store in one SQLite file, safe for many threads and many processes."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        create: bool = True,
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
        if not create and not os.path.exists(path):
            raise StoreUnavailable(
                f"no sagaway database at {path!r}: pass the right path (--db or $SAGAWAY_DB), "
                "or start an App on it first to create it"
            )
        self.path = path
        self.url = f"sqlite:///{path}"
        self.synchronous = level
        self._busy_timeout = busy_timeout
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._reads_done = threading.Condition(self._readers_lock)
        self._reading = 0
        self._closed = False
        self._writer = self._connect()
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._writer.close()
            raise StoreUnavailable(
                f"cannot open {path!r} as a sagaway SQLite database: {exc}"
            ) from exc
        except BaseException:
            self._writer.close()
            raise
        super().__init__()

    @property
    def description(self) -> str:
        return (
            f"SQLite {sqlite3.sqlite_version} at {self.path} (WAL, synchronous={self.synchronous})"
        )

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self._busy_timeout,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(
                f"cannot open {self.path!r} as a sagaway SQLite database: {exc}"
            ) from exc
        return conn

    def _migrate(self) -> None:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations.apply(conn, "sqlite", repr(self.path))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        """The schema version recorded in the file."""
        row = self._read(
            lambda cur: cur.one("SELECT value FROM sagaway_meta WHERE key = 'schema_version'")
        )
        return int(row[0])

    def _convert(self, sql: str) -> str:
        return sql

    @contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (I/O error)
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read_connection(self) -> Iterator[Any]:
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
                keep = conn is not None and not self._closed
                if keep and len(self._idle_readers) < READERS_KEPT:
                    self._idle_readers.append(conn)  # type: ignore[arg-type]
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
        self._writer.close()
