"""State monitoring: turn an alarm's evaluations into the notifications an operator wants.

- every state change is notified (except the quiet start, INSUFFICIENT_DATA -> OK, when
  nothing has happened yet);
- while the alarm stays in ALARM it is re-notified every `renotify_every` periods with how
  long the incident has lasted;
- on recovery (back to OK) the notification carries the incident's duration;
- flapping is damped: after `flap_threshold` state changes within the last `flap_window`
  evaluations one FLAPPING notification is sent and the rest are held back until the state
  has held for `flap_settle` evaluations; then one notification tells the settled state.

An incident starts at the first evaluation in ALARM and ends at the first notified OK after
it; a detour through INSUFFICIENT_DATA does not end it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from sagaway.observe._time import format_duration, iso_time
from sagaway.observe.alarms._metric_alarm import AlarmDefinitionError, AlarmState

__all__ = ["KINDS", "IncidentTracker", "Notification", "NotifyPolicy"]

KINDS = ("ALARM", "OK", "INSUFFICIENT_DATA", "RENOTIFY", "FLAPPING", "NOTIFIER_FAILING")


@dataclass(frozen=True)
class NotifyPolicy:
    """When to notify, per alarm.

    `renotify_every`: periods between reminders while in ALARM (None: never).
    `flap_threshold`: state changes within the last `flap_window` evaluations that mean the
    alarm is flapping (0 disables damping). `flap_settle`: evaluations the state must hold
    before notifications resume.
    """

    renotify_every: int | None = None
    flap_window: int = 10
    flap_threshold: int = 4
    flap_settle: int = 3

    def __post_init__(self) -> None:
        if self.renotify_every is not None and (
            not isinstance(self.renotify_every, int) or self.renotify_every < 1
        ):
            raise AlarmDefinitionError(
                "renotify_every must be a whole number of periods >= 1, "
                f"got {self.renotify_every!r}"
            )
        if not isinstance(self.flap_window, int) or self.flap_window < 2:
            raise AlarmDefinitionError(
                f"flap_window must be an integer >= 2, got {self.flap_window!r}"
            )
        if (
            not isinstance(self.flap_threshold, int)
            or not 0 <= self.flap_threshold <= self.flap_window
        ):
            raise AlarmDefinitionError(
                "flap_threshold must be an integer between 0 (no damping) and flap_window "
                f"({self.flap_window}), got {self.flap_threshold!r}"
            )
        if not isinstance(self.flap_settle, int) or self.flap_settle < 1:
            raise AlarmDefinitionError(
                f"flap_settle must be an integer >= 1, got {self.flap_settle!r}"
            )


@dataclass(frozen=True)
class Notification:
    """One message about one alarm. `id` is stable, so receivers can drop duplicates."""

    alarm: str
    kind: str
    state: AlarmState
    at: float
    previous: AlarmState | None = None
    incident_started: float | None = None
    duration: float | None = None
    renotify_count: int = 0
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """`alarm/KIND/timestamp`: the same notification always has the same id."""
        return f"{self.alarm}/{self.kind}/{self.at:.0f}"

    @property
    def summary(self) -> str:
        """One line for people: `[ALARM] checkout-5xx: ... (for 5m)`."""
        head = f"[{self.kind}] {self.alarm}"
        if self.kind == "RENOTIFY":
            head = f"[ALARM] {self.alarm} still in ALARM (reminder {self.renotify_count})"
        elif self.kind == "OK" and self.duration is not None:
            head = f"[OK] {self.alarm} recovered"
        text = f"{head}: {self.reason}" if self.reason else head
        if self.duration is not None and (self.duration or self.kind != "ALARM"):
            verb = "lasted" if self.kind == "OK" else "ongoing for"
            text += f" (incident {verb} {format_duration(self.duration)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: times as ISO 8601 UTC plus raw timestamps."""
        return {
            "id": self.id,
            "alarm": self.alarm,
            "kind": self.kind,
            "state": self.state.value,
            "previous_state": self.previous.value if self.previous else None,
            "timestamp": iso_time(self.at),
            "at": self.at,
            "incident_started": (
                iso_time(self.incident_started) if self.incident_started is not None else None
            ),
            "duration_seconds": self.duration,
            "renotify_count": self.renotify_count,
            "reason": self.reason,
            "summary": self.summary,
            "details": self.details,
        }


class IncidentTracker:
    """Follows one alarm's states over evaluations and says what to notify.

    `period` is the time between evaluations in seconds (for reminders). Not thread-safe:
    one tracker per alarm, fed in time order.
    """

    def __init__(self, alarm: str, period: float, policy: NotifyPolicy | None = None) -> None:
        self.alarm = alarm
        self.period = period
        self.policy = policy or NotifyPolicy()
        self.state = AlarmState.INSUFFICIENT_DATA
        self.flapping = False
        self.incident_started: float | None = None
        self._changes: deque[bool] = deque(maxlen=self.policy.flap_window)
        self._stable = 0
        self._changed_ever = False
        self._last_alarm_notice: float | None = None
        self._renotified = 0

    def update(
        self, state: AlarmState, at: float, reason: str = "", details: dict | None = None
    ) -> list[Notification]:
        """Record the state of the evaluation at `at`; return the notifications to send."""
        previous = self.state
        changed = state != previous
        quiet_start = (
            changed
            and not self._changed_ever
            and previous == AlarmState.INSUFFICIENT_DATA
            and state == AlarmState.OK
        )
        self._changes.append(changed and not quiet_start)  # starting up is not flapping
        self._stable = 1 if changed else self._stable + 1
        self.state = state
        self._changed_ever |= changed
        if state == AlarmState.ALARM and self.incident_started is None:
            self.incident_started = at

        def note(kind: str, **extra: Any) -> Notification:
            return Notification(
                alarm=self.alarm,
                kind=kind,
                state=state,
                at=at,
                previous=previous,
                incident_started=self.incident_started,
                reason=extra.pop("reason", reason),
                details=details or {},
                **extra,
            )

        policy = self.policy
        if self.flapping:
            if self._stable < policy.flap_settle:
                return []
            self.flapping = False
            self._changes.clear()
            return self._announce(note, at, settled=True)
        if policy.flap_threshold and sum(self._changes) >= policy.flap_threshold:
            self.flapping = True
            return [
                note(
                    "FLAPPING",
                    duration=self._duration(at),
                    reason=(
                        f"{sum(self._changes)} state changes in the last {len(self._changes)} "
                        f"evaluations (now {state.value}); further notifications are held "
                        f"until the state holds for {policy.flap_settle} evaluations"
                    ),
                )
            ]
        if changed:
            if quiet_start:
                return []  # nothing has happened yet
            return self._announce(note, at, settled=False)
        if (
            state == AlarmState.ALARM
            and policy.renotify_every
            and self._last_alarm_notice is not None
            and at - self._last_alarm_notice >= policy.renotify_every * self.period - 1e-9
        ):
            self._last_alarm_notice = at
            self._renotified += 1
            return [note("RENOTIFY", duration=self._duration(at), renotify_count=self._renotified)]
        return []

    def _duration(self, at: float) -> float | None:
        return None if self.incident_started is None else at - self.incident_started

    def _announce(self, note, at: float, settled: bool) -> list[Notification]:
        state = self.state
        suffix = " (stable again after flapping)" if settled else ""
        if state == AlarmState.ALARM:
            self._last_alarm_notice = at
            self._renotified = 0
            n = note("ALARM", duration=self._duration(at))
        elif state == AlarmState.OK and self.incident_started is not None:
            n = note("OK", duration=self._duration(at))
            self.incident_started = None
            self._last_alarm_notice = None
        else:
            n = note(state.value, duration=self._duration(at))
        if suffix:
            n = replace(n, reason=(n.reason + suffix).strip())
        return [n]
