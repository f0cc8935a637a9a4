"""Wake-ups over PostgreSQL's LISTEN/NOTIFY: one listening connection per store.

Writes that make a run due send `NOTIFY` on the store's channel inside their own
transaction, so the notification goes out exactly when the write commits. `WakeListener`
keeps one connection in LISTEN and calls its subscribers on every notification. A
notification sent while the listener was disconnected is lost, so subscribers are also
called after every (re)connection; a worker's poll is then only the fallback for the gap.
A lost LISTEN connection is replaced at once, then with backoff; failing to connect is the
store's outage (`_outage`), said once.
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import threading
from collections.abc import Callable

import psycopg

from sagaway.store._outage import Outage

__all__ = ["WakeListener"]

log = logging.getLogger("sagaway")

_RETRY_FIRST, _RETRY_MAX = 0.1, 5.0


class WakeListener:
    """Calls subscribers whenever a notification arrives on `channel` (and after each
    reconnection). Uses exactly one connection, opened by its own thread."""

    def __init__(self, conninfo: str, channel: str, where: str, outage: Outage) -> None:
        self._conninfo = conninfo
        self._outage = outage
        self._listen_sql = f'LISTEN "{channel}"'
        self._where = where
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        # A self-pipe wakes the thread out of select() at once when the store closes.
        self._stop_read, self._stop_write = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="sagaway-listen", daemon=True)
        self.connected = threading.Event()
        self.notifications = 0

    def start(self) -> None:
        """Start listening in the background."""
        self._thread.start()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback()` on every wake-up; returns the function that unsubscribes."""
        key = next(self._ids)
        with self._lock:
            self._subscribers[key] = callback

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(key, None)

        return unsubscribe

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and close the connection."""
        self._stopping = True
        os.write(self._stop_write, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout)
        os.close(self._stop_read)
        os.close(self._stop_write)

    def _fire(self) -> None:
        with self._lock:
            callbacks = list(self._subscribers.values())
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("sagaway: a wake-up subscriber failed")

    def _loop(self) -> None:
        delay = _RETRY_FIRST
        while not self._stopping:
            try:
                conn = psycopg.connect(self._conninfo, autocommit=True)
            except psycopg.Error as exc:
                self._outage.failed(" ".join(str(exc).split()))  # workers poll meanwhile
                if self._pause(delay):
                    return
                delay = min(_RETRY_MAX, delay * 2)
                continue
            try:
                conn.execute(self._listen_sql)
                delay = _RETRY_FIRST
                self.connected.set()
                self._outage.ok()
                self._fire()  # whatever was sent while we were away
                self._drain(conn)
            except psycopg.Error as exc:
                if not self._stopping:
                    log.info(
                        "sagaway: lost the LISTEN connection to %s (%s); reconnecting",
                        self._where,
                        " ".join(str(exc).split()),
                    )
            finally:
                self.connected.clear()
                conn.close()

    def _drain(self, conn: psycopg.Connection) -> None:
        """Wait for notifications until stopped; raises when the connection is lost."""
        pgconn = conn.pgconn
        socket = pgconn.socket
        while not self._stopping:
            readable, _, _ = select.select([socket, self._stop_read], [], [])
            if self._stop_read in readable:
                return
            pgconn.consume_input()  # raises OperationalError when the server went away
            count = 0
            while pgconn.notifies() is not None:
                count += 1
            if count:
                self.notifications += count
                self._fire()
            elif pgconn.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the LISTEN connection was closed")

    def _pause(self, seconds: float) -> bool:
        """Sleep, or return True at once when stopped."""
        readable, _, _ = select.select([self._stop_read], [], [], seconds)
        return bool(readable) or self._stopping
