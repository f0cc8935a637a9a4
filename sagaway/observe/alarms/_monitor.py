"""The monitor: log lines in, alarm states and notifications out, one period at a time.

`Monitor.feed(line)` dates a line, runs every metric filter over it and adds the observations
to the metric's `Series` (one per metric and period). `Monitor.evaluate_until(t)` evaluates
every period that ended at or before `t`: each metric alarm at its own period boundaries (an
alarm on an engine metric reads its buckets from the store through an `EngineMetricReader`),
then the sources (such as SLO alerts) and composites, then the incident trackers, whose
notifications go to the dispatcher. The same code serves `sagaway alarms replay` (time comes
from the data) and `watch` (time comes from the clock).

Nothing is dropped silently: undated lines are counted and handed to `on_reject`, lines
that arrive for a period already evaluated are counted as late (and still used by later
evaluations), lines older than what is kept are counted and handed to `on_reject`, and a
line a JSON filter parsed and found not to be JSON is counted by that filter and a copy is
handed to `on_reject` (it still counts in its period, as a line that matched nothing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sagaway.observe._time import iso_time
from sagaway.observe.alarms._config import AlarmConfig
from sagaway.observe.alarms._dispatch import Dispatcher
from sagaway.observe.alarms._engine_alarms import EngineMetricReader, EngineMetricReadError
from sagaway.observe.alarms._incident import IncidentTracker, Notification, NotifyPolicy
from sagaway.observe.alarms._metric_alarm import AlarmState, MetricAlarm
from sagaway.observe.metrics._series import Series

__all__ = ["LineStats", "Monitor", "Transition"]


@dataclass
class LineStats:
    """What happened to the lines read so far."""

    read: int = 0
    dated: int = 0
    dated_by_arrival: int = 0
    undated: int = 0
    late: int = 0
    too_old: int = 0
    first: float | None = None
    last: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "read": self.read,
            "dated": self.dated,
            "dated_by_arrival": self.dated_by_arrival,
            "undated": self.undated,
            "late": self.late,
            "too_old": self.too_old,
        }


@dataclass(frozen=True)
class Transition:
    """One change of an alarm's state (the first evaluation counts as one)."""

    at: float
    alarm: str
    state: AlarmState
    previous: AlarmState
    reason: str
    datapoints: list[float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "timestamp": iso_time(self.at),
            "at": self.at,
            "alarm": self.alarm,
            "state": self.state.value,
            "previous_state": self.previous.value,
            "reason": self.reason,
            "datapoints": self.datapoints,
        }


def _reason(alarm: MetricAlarm, points: list[float | None], state: AlarmState) -> str:
    recent = [p for p in points if p is not None][-alarm.evaluation_periods :]
    shown = ", ".join("-" if p is None else f"{p:g}" for p in points)
    breaching = sum(1 for p in recent if alarm.breaches(p))
    if state == AlarmState.INSUFFICIENT_DATA:
        return f"not enough data for {alarm.describe()} [{shown}]"
    return (
        f"{breaching} of the last {len(recent)} datapoints {alarm.comparison} "
        f"{alarm.threshold:g} (needs {alarm.datapoints_to_alarm} of "
        f"{alarm.evaluation_periods}) [{shown}]"
    )


class Monitor:
    """Runs a whole `AlarmConfig`; see the module docstring.

    `dispatcher` may be None (evaluate and record, notify nobody). `on_reject(line, why)`
    receives each line set aside. `keep_periods` bounds memory in long runs: buckets older
    than that many periods of the longest-looking alarm are dropped. `engine` reads the
    alarms on engine metrics (required when the config has some; ValueError otherwise).
    Without log lines, call `start_at` to say when evaluations begin.
    """

    def __init__(
        self,
        config: AlarmConfig,
        dispatcher: Dispatcher | None = None,
        on_reject: Callable[[str, str], None] | None = None,
        keep_periods: int | None = None,
        engine: EngineMetricReader | None = None,
    ) -> None:
        if config.reads_engine and engine is None:
            raise ValueError(
                f"alarms {', '.join(config.reads_engine)} read engine metrics: "
                "pass engine=EngineMetricReader(store)"
            )
        for gray in config.gray_failures.values():
            gray.bind(engine)  # type: ignore[arg-type]  # checked just above
        self.config = config
        self.engine = engine
        self.dispatcher = dispatcher
        self.on_reject = on_reject
        self.stats = LineStats()
        self.states: dict[str, AlarmState] = {}
        self.transitions: list[Transition] = []
        self.notifications: list[Notification] = []
        alarms = config.alarm_set.alarms
        periods = [int(a.period) for a in alarms.values()] + [config.period]
        self.tick = math.gcd(*periods)
        self._series: dict[str, list[tuple[Series, MetricAlarm]]] = {}
        self._engine = [(alarms[name], ref) for name, ref in config.engine.items()]
        for alarm in alarms.values():
            if alarm.name in config.engine:
                continue
            keep = alarm.statistic.startswith("p")
            series = Series(alarm.period, keep_samples=keep)
            self._series.setdefault(alarm.metric or "", []).append((series, alarm))
        # Only JSON filters can find a line unparsable; the others skip that check per line.
        self._filters = [
            (f, self._series.get(name, []), f.pattern.kind == "json")
            for name, f in config.filters.items()
        ]
        self._trackers: dict[str, IncidentTracker] = {}
        for name in config.alarm_set.names:
            source = config.alarm_set.sources.get(name)
            period = alarms[name].period if name in alarms else config.period
            period = getattr(source, "period", period)  # a source with its own period
            policy = config.policies.get(name, NotifyPolicy())
            self._trackers[name] = IncidentTracker(name, period, policy)
            self.states[name] = AlarmState.INSUFFICIENT_DATA
        longest = max(
            [a.period * (a.evaluation_range or 1) for a in alarms.values()] or [config.period]
        )
        self._retention = longest + (keep_periods or 2) * max(periods)
        self._reported: set[str] = set()
        self.next_tick: float | None = None
        self.evaluated_until: float | None = None

    def start_at(self, timestamp: float) -> None:
        """Make the first evaluation the end of the period containing `timestamp`."""
        self.next_tick = (math.floor(timestamp / self.tick) + 1) * self.tick

    def feed(self, line: str, arrival: float | None = None) -> None:
        """Take one log line; `arrival` (watching live) dates lines that carry no time."""
        stats = self.stats
        stats.read += 1
        at = self.config.timestamps.read(line)
        if at is None:
            if arrival is None:
                stats.undated += 1
                if self.on_reject:
                    self.on_reject(line, "no readable timestamp")
                return
            at = arrival
            stats.dated_by_arrival += 1
        else:
            stats.dated += 1
        if self.evaluated_until is not None and at < self.evaluated_until:
            if at < self.evaluated_until - self._retention:
                stats.too_old += 1
                if self.on_reject:
                    self.on_reject(line, f"older than the {self._retention:g}s kept")
                return
            stats.late += 1
        if stats.first is None or at < stats.first:
            stats.first = at
        if stats.last is None or at > stats.last:
            stats.last = at
        unparsable = None
        for metric_filter, targets, json_pattern in self._filters:
            if json_pattern:
                before = metric_filter.pattern.unparsable
                value = metric_filter.observe(line)
                if unparsable is None and metric_filter.pattern.unparsable != before:
                    unparsable = metric_filter.name
            else:
                value = metric_filter.observe(line)
            if value is not None:
                for series, _ in targets:
                    series.add(at, value)
        if unparsable is not None and self.on_reject:
            # Still counted in its period (it matched nothing); a copy is set aside to look at.
            self.on_reject(line, f"not valid JSON (filter {unparsable!r} parsed it)")

    def evaluate_until(self, now: float) -> list[Transition]:
        """Evaluate every period that ended at or before `now`; return the transitions."""
        if self.next_tick is None:
            if self.stats.first is None:
                return []
            self.start_at(self.stats.first)
        changes: list[Transition] = []
        while self.next_tick is not None and self.next_tick <= now:
            changes += self._evaluate(self.next_tick)
            self.evaluated_until = self.next_tick
            self.next_tick += self.tick
        return changes

    def _evaluate(self, at: float) -> list[Transition]:
        config = self.config
        changes: list[Transition] = []
        fresh: dict[str, AlarmState] = {}
        reasons: dict[str, tuple[str, list[float | None] | None]] = {}
        for targets in self._series.values():
            for series, alarm in targets:
                if round(at) % int(alarm.period):
                    continue
                points = series.datapoints(at, alarm.evaluation_range or 1, alarm.statistic)
                state = alarm.evaluate(points, previous=self.states[alarm.name])
                fresh[alarm.name] = state
                reasons[alarm.name] = (_reason(alarm, points, state), points)
                series.drop_before(at - self._retention)
        self._evaluate_engine(at, fresh, reasons)
        # Only metric alarms carry state between evaluations here: sources are asked afresh
        # and composites recomputed, every time.
        known = {name: self.states[name] for name in config.alarm_set.alarms}
        merged = config.alarm_set.evaluate({**known, **fresh}, at=at)
        for name in config.alarm_set.names:
            if name in config.alarm_set.alarms and name not in fresh:
                continue
            state = merged[name]
            reason, points = reasons.get(name, ("", None))
            details: dict[str, Any] = {"datapoints": points} if points is not None else {}
            if name in config.alarm_set.composites:
                composite = config.alarm_set.composites[name]
                reason = f"rule {composite.rule!r} is {'true' if state == 'ALARM' else 'false'}"
                details = {"children": {c: merged[c].value for c in composite.children}}
                alarming = [c for c in composite.children if merged[c] == AlarmState.ALARM]
                if alarming:
                    reason += f" (in ALARM: {', '.join(alarming)})"
            elif name in config.alarm_set.sources:
                explain = getattr(config.alarm_set.sources[name], "explain", None)
                reason = explain(at) if callable(explain) else "reported by the source"
            elif name in config.engine:
                details["metric"] = config.engine[name].describe()
            previous = self.states[name]
            if state != previous or name not in self._reported:
                self._reported.add(name)
                change = Transition(at, name, state, previous, reason, points)
                changes.append(change)
                self.transitions.append(change)
            self.states[name] = state
            for note in self._trackers[name].update(state, at, reason, details):
                self.notifications.append(note)
                if self.dispatcher is not None:
                    self.dispatcher.submit(note, config.notify.get(name, ()))
        return changes

    def _evaluate_engine(
        self,
        at: float,
        fresh: dict[str, AlarmState],
        reasons: dict[str, tuple[str, list[float | None] | None]],
    ) -> None:
        """The alarms on engine metrics due at `at`, from the store (one read for all)."""
        due = [(alarm, ref) for alarm, ref in self._engine if not round(at) % int(alarm.period)]
        if not due:
            return
        assert self.engine is not None
        spans = [alarm.evaluation_range or 1 for alarm, _ in due]
        requests = [
            (ref, alarm.period, at - span * alarm.period)
            for (alarm, ref), span in zip(due, spans, strict=True)
        ]
        try:
            found = self.engine.read(requests)
        except EngineMetricReadError as exc:
            # Not knowing is not "fine": the alarms cannot say until the store answers.
            for alarm, _ in due:
                fresh[alarm.name] = AlarmState.INSUFFICIENT_DATA
                reasons[alarm.name] = (str(exc), None)
            return
        for (alarm, _), span, series in zip(due, spans, found, strict=True):
            points = series.datapoints(at, span, alarm.statistic)
            state = alarm.evaluate(points, previous=self.states[alarm.name])
            fresh[alarm.name] = state
            reasons[alarm.name] = (_reason(alarm, points, state), points)
