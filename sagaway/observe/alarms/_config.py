"""`alarms.yaml`: filters, alarms, composites and notifiers declared in one file.

An alarm reads a log filter (`metric:`) or the engine's own metrics in the store
(`engine_metric:` and `where:`); composites may also use the SLO burn-rate alerts of the SLO
file named under `slos:` (children `slo:<slo>:<severity>`) and the gray-failure sources of
`gray_failures:` (callers' step metrics against the dependency's health probe).

`load_config(path)` validates everything at once and raises `AlarmConfigurationError` (a
`ConfigurationError`) naming the file, the line and the entry at fault (with a suggestion for a
misspelt key or name). `${VAR}` and `${VAR:-default}` in strings are replaced from the
environment, so secrets such as webhook URLs need not be written in the file. The format is
documented in docs/alarms.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from sagaway.observe._config_file import read_config_text
from sagaway.observe.alarms._composite import AlarmSet, CompositeAlarm
from sagaway.observe.alarms._config_sources import (
    GRAY_KEYS,
    alarm_metric,
    check_children,
    check_engine_alarm,
    engine_ref,
    gray_failure,
    slo_alerts,
)
from sagaway.observe.alarms._engine_alarms import GAUGES, EngineMetricRef
from sagaway.observe.alarms._gray import GrayFailureSource
from sagaway.observe.alarms._incident import KINDS, NotifyPolicy
from sagaway.observe.alarms._logsource import FORMATS, TimestampReader
from sagaway.observe.alarms._metric_alarm import AlarmDefinitionError, MetricAlarm
from sagaway.observe.alarms._notify import (
    EmailNotifier,
    Notifier,
    SlackNotifier,
    TicketNotifier,
    WebhookNotifier,
)
from sagaway.observe.alarms._yaml import AlarmConfigurationError, Entry, LineMap, expand, load_yaml
from sagaway.observe.filters._metric_filter import FilterPatternError, MetricFilter
from sagaway.observe.slo._alarms import SLO_PREFIX, SloAlerts
from sagaway.resilience import Retry

__all__ = ["AlarmConfig", "load_config", "parse_config"]


@dataclass
class AlarmConfig:
    """Everything `alarms.yaml` declares, validated and built.

    `engine` maps each alarm on an engine metric to what it reads; `store` is the `store:`
    URL (`store_error` says why it could not be expanded); `slo_alerts` holds the SLO alerts
    of `slos:` and `gray_failures` the sources of `gray_failures:` (both also among
    `alarm_set.sources`), nothing read yet.
    """

    period: int
    timestamps: TimestampReader
    filters: dict[str, MetricFilter]
    alarm_set: AlarmSet
    notifiers: dict[str, Notifier]
    notify: dict[str, tuple[str, ...]] = field(default_factory=dict)
    policies: dict[str, NotifyPolicy] = field(default_factory=dict)
    retry: Retry = field(default_factory=Retry)
    dead_letter: str | None = None
    source: str = "alarms.yaml"
    engine: dict[str, EngineMetricRef] = field(default_factory=dict)
    store: str | None = None
    store_error: str | None = None
    slo_alerts: SloAlerts | None = None
    gray_failures: dict[str, GrayFailureSource] = field(default_factory=dict)

    @property
    def reads_engine(self) -> list[str]:
        """The alarms and sources that read the engine's metrics from a store."""
        return [*self.engine, *self.gray_failures]

    def store_url(self, override: str | None = None) -> str | None:
        """The store engine metrics are read from: `override` (the command line's --db),
        else `store:` with its ${VAR}s expanded, else None (the default store).

        Raises AlarmConfigurationError when `store:` names an environment variable that is not set.
        """
        if override:
            return override
        if self.store_error:
            raise AlarmConfigurationError(self.store_error)
        return self.store

    @property
    def alarms(self) -> dict[str, MetricAlarm]:
        """Metric alarms by name."""
        return self.alarm_set.alarms

    @property
    def composites(self) -> dict[str, CompositeAlarm]:
        """Composite alarms by name."""
        return self.alarm_set.composites


def load_config(path: str | Path) -> AlarmConfig:
    """Read and validate `path`; raise AlarmConfigurationError (one line, pointing at the
    problem)."""
    text = read_config_text(path, AlarmConfigurationError, "the file")
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "alarms.yaml") -> AlarmConfig:
    """Validate the YAML `text`; see `load_config`."""
    data = load_yaml(text, source)
    top = Entry(
        data if data is not None else LineMap(),
        "top level",
        source,
        (
            "period",
            "timestamp",
            "defaults",
            "filters",
            "alarms",
            "composites",
            "sources",
            "notifiers",
            "delivery",
            "store",
            "slos",
            "gray_failures",
        ),
    )
    period = top.get("period", int, 60)
    if period < 1:
        raise top.error("'period' must be a whole number of seconds >= 1")
    timestamps = _timestamps(top, source)
    defaults = Entry(
        top.get("defaults", dict, LineMap()), "defaults", source, (*_POLICY_KEYS, "notify")
    )
    notifiers = _notifiers(top, source)
    filters = _filters(top, source)
    store, store_error = None, None
    try:
        store = top.get("store", str)
    except AlarmConfigurationError as exc:
        store_error = str(exc)  # only an error if no --db replaces it
    slos = slo_alerts(top, source)

    alarms: list[MetricAlarm] = []
    engine: dict[str, EngineMetricRef] = {}
    notify: dict[str, tuple[str, ...]] = {}
    notify_at: dict[str, Entry] = {}  # where each alarm's notify list was written
    policies: dict[str, NotifyPolicy] = {}
    for i, raw in enumerate(top.get("alarms", list, [])):
        entry = Entry(raw, f"alarms[{i}]", source, _ALARM_KEYS + _POLICY_KEYS + ("notify",))
        name = entry.get("name", str, required=True)
        entry.where = f"alarm {name!r}"
        metric = alarm_metric(entry, filters)
        ref = engine_ref(entry, source) if metric is None else None
        statistic = entry.get("statistic", str, "sum" if ref is None else "count")
        if ref is not None and ref.metric in GAUGES and "statistic" not in entry.data:
            raise entry.error(
                f"{ref.metric} is a sampled gauge, so 'statistic' is required: max or avg "
                "(count would be the number of samples)"
            )
        try:
            alarm = MetricAlarm(
                name=name,
                threshold=entry.get("threshold", float, required=True),
                comparison=entry.get("comparison", str, ">="),
                evaluation_periods=entry.get("evaluation_periods", int, 1),
                datapoints_to_alarm=entry.get("datapoints_to_alarm", int),
                treat_missing=entry.get("treat_missing", str, "missing"),
                period=entry.get("period", int, period),
                statistic=statistic,
                metric=metric if ref is None else f"engine:{ref.describe()}",
                evaluation_range=entry.get("evaluation_range", int),
                description=entry.get("description", str, ""),
            )
        except AlarmDefinitionError as exc:
            raise entry.error(str(exc).removeprefix(f"alarm {name!r}: ")) from None
        if ref is not None:
            check_engine_alarm(entry, alarm, "period" in entry.data)
            engine[name] = ref
        if alarm.period % period and period % alarm.period:
            raise entry.error(
                f"period {alarm.period:g}s must be a multiple of the top-level period ({period}s)",
                "period",
            )
        alarms.append(alarm)
        notify[name] = entry.names("notify", defaults.names("notify"))
        notify_at[name] = entry if "notify" in entry.data else defaults
        policies[name] = _policy(entry, defaults)

    composites: list[CompositeAlarm] = []
    composite_entries: list[tuple[CompositeAlarm, Entry]] = []
    for i, raw in enumerate(top.get("composites", list, [])):
        entry = Entry(
            raw,
            f"composites[{i}]",
            source,
            ("name", "rule", "description", "notify", *_POLICY_KEYS),
        )
        name = entry.get("name", str, required=True)
        entry.where = f"composite {name!r}"
        try:
            composite = CompositeAlarm(
                name, entry.get("rule", str, required=True), entry.get("description", str, "")
            )
        except AlarmDefinitionError as exc:
            raise entry.error(str(exc).replace("\n", " | "), "rule") from None
        composites.append(composite)
        composite_entries.append((composite, entry))
        notify[name] = entry.names("notify", defaults.names("notify"))
        notify_at[name] = entry if "notify" in entry.data else defaults
        policies[name] = _policy(entry, defaults)

    grays: dict[str, GrayFailureSource] = {}
    for i, raw in enumerate(top.get("gray_failures", list, [])):
        entry = Entry(raw, f"gray_failures[{i}]", source, GRAY_KEYS + _POLICY_KEYS + ("notify",))
        gray = gray_failure(entry, period)
        if gray.name in grays:
            raise entry.error("this name is already used by another gray failure", "name")
        grays[gray.name] = gray
        notify[gray.name] = entry.names("notify", defaults.names("notify"))
        notify_at[gray.name] = entry if "notify" in entry.data else defaults
        policies[gray.name] = _policy(entry, defaults)

    sources: list = list(top.names("sources"))
    for name in sources:
        if name.startswith(SLO_PREFIX):
            raise top.error(
                f"source {name!r}: names starting with {SLO_PREFIX!r} are the SLO alerts "
                "declared under 'slos:'; rename this source",
                "sources",
            )
    if slos is not None:
        sources += slos.sources.values()
    sources += grays.values()
    known = {a.name for a in alarms} | {c.name for c in composites}
    known |= {s if isinstance(s, str) else s.name for s in sources}
    for composite, entry in composite_entries:
        check_children(composite, entry, known, slos)
    try:
        alarm_set = AlarmSet(alarms, composites, sources)
    except AlarmDefinitionError as exc:
        raise AlarmConfigurationError(f"{source}: {exc}") from None
    for name, targets in notify.items():
        for target in targets:
            if target not in notifiers:
                known = ", ".join(notifiers) or "none are declared"
                raise notify_at[name].error(
                    f"notify names {target!r}, which is not a notifier (known: {known})",
                    "notify",
                )
    delivery = Entry(
        top.get("delivery", dict, LineMap()),
        "delivery",
        source,
        ("attempts", "base", "cap", "dead_letter"),
    )
    try:
        retry = Retry(
            attempts=delivery.get("attempts", int, 5),
            base=delivery.get("base", float, 1.0),
            cap=delivery.get("cap", float, 60.0),
        )
    except ValueError as exc:
        raise delivery.error(str(exc)) from None
    return AlarmConfig(
        period=period,
        timestamps=timestamps,
        filters=filters,
        alarm_set=alarm_set,
        notifiers=notifiers,
        notify=notify,
        policies=policies,
        retry=retry,
        dead_letter=delivery.get("dead_letter", str),
        source=source,
        engine=engine,
        store=store,
        store_error=store_error,
        slo_alerts=slos,
        gray_failures=grays,
    )


_ALARM_KEYS = (
    "name",
    "metric",
    "engine_metric",
    "where",
    "threshold",
    "comparison",
    "evaluation_periods",
    "datapoints_to_alarm",
    "treat_missing",
    "period",
    "statistic",
    "evaluation_range",
    "description",
)
_POLICY_KEYS = ("renotify_every", "flap_window", "flap_threshold", "flap_settle")


def _policy(entry: Entry, defaults: Entry) -> NotifyPolicy:
    values = {}
    for key in _POLICY_KEYS:
        value = entry.get(key, int, defaults.get(key, int))
        if value is not None:
            values[key] = value
    try:
        return NotifyPolicy(**values)
    except AlarmDefinitionError as exc:
        raise entry.error(str(exc)) from None


def _timestamps(top: Entry, source: str) -> TimestampReader:
    entry = Entry(
        top.get("timestamp", dict, LineMap()), "timestamp", source, ("field", "format", "regex")
    )
    fmt = entry.get("format", str, "auto")
    if fmt not in FORMATS and "%" not in fmt:
        raise entry.error(
            f"format {fmt!r} must be one of {', '.join(FORMATS)} or a strptime format"
        )
    try:
        return TimestampReader(entry.get("field", str), fmt, entry.get("regex", str))
    except (ValueError, re.error) as exc:
        raise entry.error(str(exc)) from None


def _filters(top: Entry, source: str) -> dict[str, MetricFilter]:
    filters: dict[str, MetricFilter] = {}
    for i, raw in enumerate(top.get("filters", list, [])):
        entry = Entry(raw, f"filters[{i}]", source, ("name", "pattern", "value", "default"))
        name = entry.get("name", str, required=True)
        entry.where = f"filter {name!r}"
        if name in filters:
            raise entry.error("this name is already used by another filter")
        pattern = entry.get("pattern", str, "")
        default = entry.get("default", float)
        if default is not None and not math.isfinite(default):
            raise entry.error("'default' must be a finite number")
        try:
            filters[name] = MetricFilter(
                name, pattern, value=entry.get("value", (float, str), 1.0), default=default
            )
        except FilterPatternError as exc:
            pointer = f"column {exc.column}: {exc.message} in {exc.pattern!r}"
            raise entry.error(f"pattern error at {pointer}") from None
        except ValueError as exc:
            raise entry.error(str(exc)) from None
    return filters


_NOTIFIER_KEYS = {
    "webhook": ("url", "headers", "timeout"),
    "slack": ("url", "headers", "timeout"),
    "ticket": ("url", "headers", "timeout", "project", "labels", "severity"),
    "email": ("host", "port", "from", "to", "username", "password", "starttls", "ssl", "timeout"),
}


def _notifiers(top: Entry, source: str) -> dict[str, Notifier]:
    notifiers: dict[str, Notifier] = {}
    for i, raw in enumerate(top.get("notifiers", list, [])):
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in _NOTIFIER_KEYS:
            line = f":{getattr(raw, 'line', 0)}" if getattr(raw, "line", 0) else ""
            raise AlarmConfigurationError(
                f"{source}{line}: notifiers[{i}]: 'type' must be one of "
                f"{', '.join(_NOTIFIER_KEYS)}, got {kind!r}"
            )
        entry = Entry(
            raw, f"notifiers[{i}]", source, ("name", "type", "kinds") + _NOTIFIER_KEYS[kind]
        )
        name = entry.get("name", str, required=True)
        entry.where = f"notifier {name!r}"
        if name in notifiers:
            raise entry.error("this name is already used by another notifier")
        kinds = entry.names("kinds") or None
        if kinds:
            unknown = [k for k in kinds if k not in KINDS]
            if unknown:
                raise entry.error(f"unknown kinds {unknown}; use some of {', '.join(KINDS)}")
        timeout = entry.get("timeout", float, 10.0)
        try:
            if kind == "email":
                notifiers[name] = EmailNotifier(
                    name,
                    host=entry.get("host", str, required=True),
                    sender=entry.get("from", str, required=True),
                    recipients=list(entry.names("to")),
                    port=entry.get("port", int, 25),
                    username=entry.get("username", str),
                    password=entry.get("password", str),
                    starttls=entry.get("starttls", bool, False),
                    use_ssl=entry.get("ssl", bool, False),
                    timeout=timeout,
                    kinds=frozenset(kinds) if kinds else None,
                )
                continue
            headers = entry.get("headers", dict, {})
            headers = {str(k): str(expand(v, entry)) for k, v in headers.items()}
            common = {
                "url": entry.get("url", str, required=True),
                "headers": headers,
                "timeout": timeout,
                "kinds": frozenset(kinds) if kinds else None,
            }
            if kind == "ticket":
                notifiers[name] = TicketNotifier(
                    name,
                    project=entry.get("project", str, ""),
                    labels=entry.names("labels"),
                    severity=entry.get("severity", str, "high"),
                    **common,
                )
            else:
                cls = SlackNotifier if kind == "slack" else WebhookNotifier
                notifiers[name] = cls(name, **common)
        except AlarmConfigurationError:
            raise  # already says where
        except ValueError as exc:
            raise entry.error(str(exc)) from None
    return notifiers
