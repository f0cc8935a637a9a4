"""`alarms.yaml`: filters, alarms, composites and notifiers declared in one file.

`load_config(path)` validates everything at once and raises `ConfigError` naming the file,
the line and the entry at fault (with a suggestion for a misspelt key or name). `${VAR}` and
`${VAR:-default}` in strings are replaced from the environment, so secrets such as webhook
URLs need not be written in the file. The format is documented in docs/alarms.md.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sagaway.observe.alarms import AlarmDefinitionError, MetricAlarm
from sagaway.observe.composite import AlarmSet, CompositeAlarm
from sagaway.observe.filters import FilterPatternError, MetricFilter
from sagaway.observe.incident import KINDS, NotifyPolicy
from sagaway.observe.logsource import FORMATS, TimestampReader
from sagaway.observe.notify import (
    EmailNotifier,
    Notifier,
    SlackNotifier,
    TicketNotifier,
    WebhookNotifier,
)
from sagaway.resilience import Retry

__all__ = ["AlarmConfig", "ConfigError", "load_config", "parse_config"]


class ConfigError(ValueError):
    """An `alarms.yaml` that cannot be used; the message names the file, line and entry."""


class _Map(dict):
    """A YAML mapping that remembers its line."""

    line = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map(loader.construct_pairs(node, deep=True))
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class AlarmConfig:
    """Everything `alarms.yaml` declares, validated and built."""

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

    @property
    def alarms(self) -> dict[str, MetricAlarm]:
        """Metric alarms by name."""
        return self.alarm_set.alarms

    @property
    def composites(self) -> dict[str, CompositeAlarm]:
        """Composite alarms by name."""
        return self.alarm_set.composites


class _Entry:
    """Typed access to one mapping of the file, with errors that say where."""

    def __init__(self, data: Any, where: str, source: str, allowed: tuple[str, ...]) -> None:
        self.source, self.where = source, where
        self.line = getattr(data, "line", 0)
        if not isinstance(data, dict):
            raise self.error(f"expected a mapping (key: value lines), got {type(data).__name__}")
        self.data = data
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.error(f"unknown key {key!r}{hint} (allowed: {', '.join(allowed)})")

    def error(self, message: str) -> ConfigError:
        line = f":{self.line}" if self.line else ""
        return ConfigError(f"{self.source}{line}: {self.where}: {message}")

    def get(self, key: str, kind: type | tuple, default: Any = None, required: bool = False):
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.error(f"'{key}' is required")
            return default
        value = _expand(self.data[key], self)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(f"'{key}' must be {_kind_name(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.error(f"'{key}' must be {_kind_name(kinds)}, got {value!r}")
        return value

    def names(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, (list, str), default=list(default))
        items = [value] if isinstance(value, str) else value
        if not all(isinstance(v, str) for v in items):
            raise self.error(f"'{key}' must be a list of names")
        return tuple(items)


def _kind_name(kinds: tuple) -> str:
    names = {
        str: "text",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _expand(value: Any, entry: _Entry) -> Any:
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise entry.error(f"environment variable {name} is not set (used as ${{{name}}})")

    return _ENV.sub(substitute, value)


def load_config(path: str | Path) -> AlarmConfig:
    """Read and validate `path`; raise ConfigError (one line, pointing at the problem)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror}") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "alarms.yaml") -> AlarmConfig:
    """Validate the YAML `text`; see `load_config`."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None
    top = _Entry(
        data if data is not None else _Map(),
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
        ),
    )
    period = top.get("period", int, 60)
    if period < 1:
        raise top.error("'period' must be a whole number of seconds >= 1")
    timestamps = _timestamps(top, source)
    defaults = _Entry(
        top.get("defaults", dict, _Map()), "defaults", source, (*_POLICY_KEYS, "notify")
    )
    notifiers = _notifiers(top, source)
    filters = _filters(top, source)

    alarms: list[MetricAlarm] = []
    notify: dict[str, tuple[str, ...]] = {}
    policies: dict[str, NotifyPolicy] = {}
    for i, raw in enumerate(top.get("alarms", list, [])):
        entry = _Entry(raw, f"alarms[{i}]", source, _ALARM_KEYS + _POLICY_KEYS + ("notify",))
        name = entry.get("name", str, required=True)
        entry.where = f"alarm {name!r}"
        metric = entry.get("metric", str, required=True)
        if metric not in filters:
            close = difflib.get_close_matches(metric, list(filters), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise entry.error(f"metric {metric!r} is not a filter in this file{hint}")
        try:
            alarm = MetricAlarm(
                name=name,
                threshold=entry.get("threshold", float, required=True),
                comparison=entry.get("comparison", str, ">="),
                evaluation_periods=entry.get("evaluation_periods", int, 1),
                datapoints_to_alarm=entry.get("datapoints_to_alarm", int),
                treat_missing=entry.get("treat_missing", str, "missing"),
                period=entry.get("period", int, period),
                statistic=entry.get("statistic", str, "sum"),
                metric=metric,
                evaluation_range=entry.get("evaluation_range", int),
                description=entry.get("description", str, ""),
            )
        except AlarmDefinitionError as exc:
            raise entry.error(str(exc).removeprefix(f"alarm {name!r}: ")) from None
        if alarm.period % period and period % alarm.period:
            raise entry.error(
                f"period {alarm.period:g}s must be a multiple of the top-level period ({period}s)"
            )
        alarms.append(alarm)
        notify[name] = entry.names("notify", defaults.names("notify"))
        policies[name] = _policy(entry, defaults)

    composites: list[CompositeAlarm] = []
    for i, raw in enumerate(top.get("composites", list, [])):
        entry = _Entry(
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
            raise entry.error(str(exc).replace("\n", " | ")) from None
        composites.append(composite)
        notify[name] = entry.names("notify", defaults.names("notify"))
        policies[name] = _policy(entry, defaults)

    sources = top.names("sources")
    try:
        alarm_set = AlarmSet(alarms, composites, sources)
    except AlarmDefinitionError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for name, targets in notify.items():
        for target in targets:
            if target not in notifiers:
                known = ", ".join(notifiers) or "none are declared"
                raise ConfigError(
                    f"{source}: {name!r} notifies {target!r}, which is not a notifier "
                    f"(known: {known})"
                )
    delivery = _Entry(
        top.get("delivery", dict, _Map()),
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
    )


_ALARM_KEYS = (
    "name",
    "metric",
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


def _policy(entry: _Entry, defaults: _Entry) -> NotifyPolicy:
    values = {}
    for key in _POLICY_KEYS:
        value = entry.get(key, int, defaults.get(key, int))
        if value is not None:
            values[key] = value
    try:
        return NotifyPolicy(**values)
    except AlarmDefinitionError as exc:
        raise entry.error(str(exc)) from None


def _timestamps(top: _Entry, source: str) -> TimestampReader:
    entry = _Entry(
        top.get("timestamp", dict, _Map()), "timestamp", source, ("field", "format", "regex")
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


def _filters(top: _Entry, source: str) -> dict[str, MetricFilter]:
    filters: dict[str, MetricFilter] = {}
    for i, raw in enumerate(top.get("filters", list, [])):
        entry = _Entry(raw, f"filters[{i}]", source, ("name", "pattern", "value", "default"))
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


def _notifiers(top: _Entry, source: str) -> dict[str, Notifier]:
    notifiers: dict[str, Notifier] = {}
    for i, raw in enumerate(top.get("notifiers", list, [])):
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in _NOTIFIER_KEYS:
            line = f":{getattr(raw, 'line', 0)}" if getattr(raw, "line", 0) else ""
            raise ConfigError(
                f"{source}{line}: notifiers[{i}]: 'type' must be one of "
                f"{', '.join(_NOTIFIER_KEYS)}, got {kind!r}"
            )
        entry = _Entry(
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
            headers = {str(k): str(_expand(v, entry)) for k, v in headers.items()}
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
        except ValueError as exc:
            raise entry.error(str(exc)) from None
    return notifiers
