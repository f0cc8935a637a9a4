"""Saying once that the database is gone, and once that it is back.

While a database restarts, is cut off or has a full disk, every call of every thread fails:
a log line per call would bury the one thing worth saying. A store's `Outage` logs the first
failure as a warning naming the cause, stays quiet while failures go on, and logs one line
when a call succeeds again, with how long the outage lasted. A database that comes and goes
(a nearly full disk, a flapping link) is not said at every flap: an outage starting within
`QUIET` seconds of the last one said is said only once it lasts `LASTING` seconds. Callers
above the store (the worker's scheduler and heartbeat, executions, the metrics recorder) log
`StoreUnavailable` at debug level only, for the same reason.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["Outage"]

log = logging.getLogger("sagaway")

QUIET = 60.0
LASTING = 5.0


class Outage:
    """The state of one store's connection to its database, as the log tells it."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.since: float | None = None  # monotonic time of the first failure, while down
        self.cause = ""
        self.outages = 0
        self._said = False  # this outage was logged
        self._last_said: float | None = None
        self._lock = threading.Lock()

    def failed(self, cause: str) -> None:
        """A call could not reach the database: say so, unless already said."""
        now = time.monotonic()
        with self._lock:
            if self.since is None:
                self.since, self.cause, self._said = now, cause, False
                self.outages += 1
            if self._said:
                return
            recently = self._last_said is not None and now - self._last_said < QUIET
            if recently and now - self.since < LASTING:
                return
            self._said, self._last_said = True, now
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
            said, self._said = self._said, False
        if since is not None and said:
            log.warning(
                "sagaway: the database at %s is back after %.1f s", self.where,
                time.monotonic() - since,
            )  # fmt: skip
