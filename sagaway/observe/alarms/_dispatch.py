"""Delivering notifications: one ordered queue per notifier, retries with backoff, and no
silent loss.

Each notifier has its own worker thread, so a slow or dead endpoint never delays the others
and each notifier receives its notifications in the order they were submitted. A failed
send is retried per the `Retry` policy (capped exponential backoff with jitter). When the
retries are exhausted (or the failure is permanent) the notification is recorded as a
`DeliveryFailure`, logged at ERROR, appended to the dead-letter file if one is configured,
and, the first time a notifier starts failing, every other notifier is told with a
NOTIFIER_FAILING notification. Secrets (URL paths and tokens, header values, passwords) are
scrubbed from every message this module logs or reports.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagaway.observe.alarms._incident import Notification
from sagaway.observe.alarms._metric_alarm import AlarmState
from sagaway.observe.alarms._notify import DeliveryError, Notifier
from sagaway.resilience import Retry

__all__ = ["DeliveryFailure", "Dispatcher", "redact"]

log = logging.getLogger("sagaway.alarms")

_CREDENTIALS_IN_URL = re.compile(r"(://[^/\s:@]+:)[^/\s@]+@")


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (longest first) and any `user:password@` replaced by ***."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _CREDENTIALS_IN_URL.sub(r"\1***@", text)


@dataclass(frozen=True)
class DeliveryFailure:
    """A notification that did not reach a notifier, and why (secrets already removed)."""

    notifier: str
    notification: Notification
    error: str
    attempts: int
    at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "notifier": self.notifier,
            "notification_id": self.notification.id,
            "alarm": self.notification.alarm,
            "kind": self.notification.kind,
            "error": self.error,
            "attempts": self.attempts,
        }


_STOP = object()


class _Lane:
    """One notifier's queue and worker thread."""

    def __init__(self, notifier: Notifier, dispatcher: Dispatcher) -> None:
        self.notifier = notifier
        self.queue: queue.Queue = queue.Queue()
        self.failing = False
        self.sent = 0
        self.thread = threading.Thread(
            target=dispatcher._work, args=(self,), name=f"notify-{notifier.name}", daemon=True
        )


class Dispatcher:
    """Sends notifications to named notifiers with retries; see the module docstring.

    `dead_letter`: a JSON-lines file that receives every notification that could not be
    delivered. `on_failure`: called with each `DeliveryFailure` (e.g. to print it).
    """

    def __init__(
        self,
        notifiers: Mapping[str, Notifier],
        retry: Retry | None = None,
        dead_letter: str | Path | None = None,
        on_failure: Callable[[DeliveryFailure], None] | None = None,
    ) -> None:
        self.retry = retry or Retry(attempts=5, base=1.0, cap=60.0)
        self.dead_letter = Path(dead_letter) if dead_letter else None
        self.on_failure = on_failure
        self.failures: list[DeliveryFailure] = []
        self._secrets = [s for n in notifiers.values() for s in n.secrets()]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lanes = {name: _Lane(n, self) for name, n in notifiers.items()}
        for lane in self._lanes.values():
            lane.thread.start()

    @property
    def sent(self) -> dict[str, int]:
        """Notifications delivered, per notifier."""
        return {name: lane.sent for name, lane in self._lanes.items()}

    def redact(self, text: str) -> str:
        """`text` without any notifier's secrets."""
        return redact(text, self._secrets)

    def submit(self, notification: Notification, to: Iterable[str]) -> None:
        """Queue `notification` for each named notifier that accepts it.

        Raises KeyError naming an unknown notifier.
        """
        for name in to:
            lane = self._lanes.get(name)
            if lane is None:
                raise KeyError(f"no notifier named {name!r}; known: {', '.join(self._lanes)}")
            if lane.notifier.accepts(notification):
                lane.queue.put(notification)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification is delivered or failed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for lane in self._lanes.values():
            while lane.queue.unfinished_tasks:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued within `timeout`, then stop; the rest is reported failed."""
        self.flush(timeout)
        self._stop.set()
        for lane in self._lanes.values():
            lane.queue.put(_STOP)
        for lane in self._lanes.values():
            lane.thread.join(timeout=5.0)

    def _work(self, lane: _Lane) -> None:
        while True:
            item = lane.queue.get()
            try:
                if item is _STOP:
                    return
                if self._stop.is_set():
                    self._fail(lane, item, "not delivered: shutting down", 0)
                else:
                    self._deliver(lane, item)
            finally:
                lane.queue.task_done()

    def _deliver(self, lane: _Lane, notification: Notification) -> None:
        tries, delay = 0, None
        while True:
            tries += 1
            try:
                lane.notifier.send(notification)
            except DeliveryError as exc:
                error = self.redact(str(exc))
                if exc.permanent or not self.retry.allows(exc, tries):
                    self._fail(lane, notification, error, tries)
                    return
                delay = self.retry.delay(tries, delay)
                log.warning(
                    "%s: %s failed (try %d): %s; retrying in %.1fs",
                    lane.notifier.describe(),
                    notification.id,
                    tries,
                    error,
                    delay,
                )
                if self._stop.wait(delay):
                    self._fail(lane, notification, f"{error}; stopped before retrying", tries)
                    return
            except Exception as exc:  # a bug in a notifier must not kill its lane
                self._fail(lane, notification, self.redact(f"{type(exc).__name__}: {exc}"), tries)
                return
            else:
                lane.sent += 1
                if lane.failing:
                    lane.failing = False
                    log.warning("%s: delivering again", lane.notifier.describe())
                return

    def _fail(self, lane: _Lane, notification: Notification, error: str, tries: int) -> None:
        failure = DeliveryFailure(lane.notifier.name, notification, error, tries, time.time())
        log.error(
            "%s: gave up on %s after %d tries: %s",
            lane.notifier.describe(),
            notification.id,
            tries,
            error,
        )
        with self._lock:
            self.failures.append(failure)
            if self.dead_letter is not None:
                record = {"failure": failure.to_dict(), "notification": notification.to_dict()}
                with self.dead_letter.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")
        if self.on_failure is not None:
            self.on_failure(failure)
        if not lane.failing and notification.kind != "NOTIFIER_FAILING":
            lane.failing = True
            warning = Notification(
                alarm=f"notifier:{lane.notifier.name}",
                kind="NOTIFIER_FAILING",
                state=AlarmState.ALARM,
                at=notification.at,
                reason=f"{lane.notifier.describe()} could not deliver {notification.id}: {error}",
            )
            others = [name for name in self._lanes if name != lane.notifier.name]
            self.submit(warning, others)
