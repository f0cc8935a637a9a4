"""Saying once that the database is gone, and once that it is back.

While a database restarts, is cut off or has a full disk, every call of every thread fails:
a log line per call would bury the one thing worth saying. A store's `Outage` logs the first
failure as a warning naming the cause, stays quiet while failures go on, and logs one line
when a call succeeds again, with how long the outage lasted. Callers above the store (the
worker's scheduler and heartbeat, executions, the metrics recorder) log `StoreUnavailable`
at debug level only, for the same reason.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["Outage"]

log = logging.getLogger("sagaway")


class Outage:
    """The state of one store's connection to its database, as the log tells it."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.since: float | None = None  # monotonic time of the first failure, while down
        self.cause = ""
        self.outages = 0
        self._lock = threading.Lock()

    def failed(self, cause: str) -> None:
        """A call could not reach the database: say so, unless already said."""
        with self._lock:
            if self.since is not None:
                return
            self.since, self.cause = time.monotonic(), cause
            self.outages += 1
        log.warning(
            "sagaway: lost the database at %s (%s); retrying with backoff until it is back",
            self.where,
            cause,
        )

    def ok(self) -> None:
        """A call succeeded: if the database was gone, say that it is back."""
        if self.since is None:  # the common case costs one attribute read
            return
        with self._lock:
            since, self.since = self.since, None
        if since is not None:
            log.warning(
                "sagaway: the database at %s is back after %.1f s", self.where,
                time.monotonic() - since,
            )  # fmt: skip
