"""The parts of `alarms.yaml` that name data beyond log filters: alarms on the engine's own
metrics (`engine_metric:`, `where:`), SLO burn-rate alerts as composite children (`slos:`) and
gray-failure sources (`gray_failures:`).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from sagaway.observe.alarms._composite import CompositeAlarm
from sagaway.observe.alarms._engine_alarms import BUCKET_SECONDS, ENGINE_LABELS, EngineMetricRef
from sagaway.observe.alarms._gray import GrayFailureSource, Probe
from sagaway.observe.alarms._metric_alarm import AlarmDefinitionError, MetricAlarm
from sagaway.observe.alarms._yaml import Entry, LineMap, expand
from sagaway.observe.filters._metric_filter import MetricFilter
from sagaway.observe.metrics._engine import engine_statistic
from sagaway.observe.slo._alarms import SLO_PREFIX, SloAlerts
from sagaway.observe.slo._spec import SloSpecError, load_slo_spec, parse_duration

__all__ = [
    "GRAY_KEYS",
    "alarm_metric",
    "check_children",
    "check_engine_alarm",
    "engine_ref",
    "gray_failure",
    "slo_alerts",
]

GRAY_KEYS = (
    "name",
    "saga",
    "step",
    "error_rate",
    "latency",
    "min_calls",
    "probe",
    "probe_timeout",
    "period",
    "evaluation_periods",
    "datapoints_to_alarm",
    "treat_missing",
    "description",
)


def alarm_metric(entry: Entry, filters: dict[str, MetricFilter]) -> str | None:
    """The log filter an alarm reads, or None when it reads an engine metric."""
    metric = entry.get("metric", str)
    if "engine_metric" in entry.data:
        if metric is not None:
            raise entry.error(
                "give either 'metric' (a log filter of this file) or 'engine_metric' "
                "(the engine's metrics in the store), not both",
                "engine_metric",
            )
        return None
    if metric is None:
        raise entry.error(
            "'metric' (a filter of this file) or 'engine_metric' (one of "
            f"{', '.join(ENGINE_LABELS)}) is required"
        )
    if "where" in entry.data:
        raise entry.error(
            "'where' selects labels of an engine metric ('engine_metric'); a log filter has none",
            "where",
        )
    if metric not in filters:
        close = difflib.get_close_matches(metric, list(filters), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if metric in ENGINE_LABELS:
            hint = f"; for the engine's own metric write 'engine_metric: {metric}'"
        raise entry.error(f"metric {metric!r} is not a filter in this file{hint}", "metric")
    return metric


def engine_ref(entry: Entry, source: str) -> EngineMetricRef:
    """The engine metric and labels an alarm reads; errors point at the key or label."""
    name = entry.get("engine_metric", str, required=True)
    try:
        EngineMetricRef(name)
    except ValueError as exc:
        raise entry.error(str(exc), "engine_metric") from None
    raw = entry.get("where", dict, LineMap())
    where = Entry(raw, f"{entry.where}: where", source, tuple(raw))
    where.line = where.line or entry.data.key_lines.get("where", entry.line)
    labels: dict[str, str] = {}
    for label, value in where.data.items():
        value = expand(value, where, label)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise where.error(f"{label}: give the label's value as text, got {value!r}", label)
        labels[str(label)] = str(value)
        try:
            EngineMetricRef(name, {str(label): str(value)})
        except ValueError as exc:
            raise where.error(str(exc), label) from None
    return EngineMetricRef(name, labels)


def check_engine_alarm(entry: Entry, alarm: MetricAlarm, period_given: bool) -> None:
    """Refuse what one-minute buckets of count, sum, min and max cannot answer."""
    if alarm.period % BUCKET_SECONDS:
        fix = "" if period_given else " (the top-level period is used: set 'period' here)"
        raise entry.error(
            f"period {alarm.period:g}s: engine metrics are kept in one-minute buckets, so an "
            f"alarm on an engine metric needs a period that is a multiple of 60 seconds "
            f"(60, 120, 300, ...){fix}",
            "period" if period_given else None,
        )
    try:
        engine_statistic(alarm.statistic)
    except ValueError as exc:
        raise entry.error(str(exc), "statistic") from None


def check_children(
    composite: CompositeAlarm, entry: Entry, known: set[str], slo_alerts: SloAlerts | None
) -> None:
    """Unknown children, reported at the composite's rule with what would fit."""
    for child in composite.children:
        if child in known:
            continue
        if child.startswith(SLO_PREFIX):
            if slo_alerts is None:
                raise entry.error(
                    f"the rule refers to {child!r}, an SLO alert, but no SLO file is declared: "
                    "add slos: {config: slo.yaml, alb: [path/to/logs]}",
                    "rule",
                )
            names = list(slo_alerts.sources)
            close = difflib.get_close_matches(child, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise entry.error(
                f"the rule refers to {child!r}, which is not an alert of "
                f"{slo_alerts.spec.source}: {hint}(its SLO alerts: {', '.join(names)})",
                "rule",
            )
        close = difflib.get_close_matches(child, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise entry.error(
            f"the rule refers to {child!r}, which is not an alarm, composite or source of "
            f"this file{hint}",
            "rule",
        )


def slo_alerts(top: Entry, source: str) -> SloAlerts | None:
    """`slos:` as `SloAlerts` (nothing read yet); paths are relative to the config file."""
    raw = top.get("slos", dict)
    if raw is None:
        return None
    entry = Entry(raw, "slos", source, ("config", "alb", "lag", "quarantine"))
    base = Path(source).parent
    spec_path = base / entry.get("config", str, required=True)
    try:
        spec = load_slo_spec(spec_path)
    except SloSpecError as exc:
        raise entry.error(f"the SLO file cannot be used: {exc}", "config") from None
    lag_text = entry.get("lag", (int, str), 0)
    try:
        plain = isinstance(lag_text, int) or lag_text.strip() == "0"
        lag = float(lag_text) if plain else parse_duration(lag_text)
    except ValueError as exc:
        raise entry.error(f"lag: {exc}", "lag") from None
    if lag < 0 or lag % 60:
        raise entry.error(
            f"lag {lag_text!r}: SLO counts are per minute; give whole minutes such as 5m",
            "lag",
        )
    return SloAlerts(
        spec,
        [str(base / p) for p in entry.names("alb")],
        lag=lag,
        quarantine=entry.get("quarantine", str, "alb-quarantine.jsonl"),
    )


def gray_failure(entry: Entry, period: int) -> GrayFailureSource:
    """One `gray_failures:` entry as a source; errors point at the key at fault."""
    name = entry.get("name", str, required=True)
    entry.where = f"gray failure {name!r}"
    try:
        probe = Probe(
            entry.get("probe", str, required=True), entry.get("probe_timeout", float, 2.0)
        )
    except AlarmDefinitionError as exc:
        key = "probe_timeout" if str(exc).startswith("probe_timeout") else "probe"
        raise entry.error(str(exc), key) from None
    own_period = entry.get("period", int, period)
    if own_period % period:
        raise entry.error(
            f"period {own_period}s must be a multiple of the top-level period ({period}s)",
            "period",
        )
    try:
        return GrayFailureSource(
            name,
            saga=entry.get("saga", str),
            step=entry.get("step", str, required=True),
            probe=probe,
            error_rate=entry.get("error_rate", float),
            latency=entry.get("latency", float),
            min_calls=entry.get("min_calls", int, 10),
            period=own_period,
            evaluation_periods=entry.get("evaluation_periods", int, 1),
            datapoints_to_alarm=entry.get("datapoints_to_alarm", int),
            treat_missing=entry.get("treat_missing", str, "notBreaching"),
            description=entry.get("description", str, ""),
        )
    except AlarmDefinitionError as exc:
        message = str(exc).removeprefix(f"alarm {name!r}: ")
        raise entry.error(message.removeprefix(f"gray failure {name!r}: ")) from None
