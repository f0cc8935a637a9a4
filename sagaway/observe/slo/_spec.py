"""SLO specifications: the YAML a user writes, validated into frozen dataclasses.

    service: shop
    slos:
      - name: api-availability
        objective: 99.9            # percent
        window: 30d                # rolling (m, h, d, w); or calendar: month, week
        indicator: {type: availability, bad_status: ["5xx"]}
        filter: {host: shop.example.com, path_prefix: /api/, method: [GET, POST]}
      - name: api-latency
        objective: 99
        window: 30d
        indicator: {type: latency, threshold: 0.3}

Every error names the file, the line, the key path and what to write instead (`SloSpecError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sagaway.errors import ConfigurationError, ObserveError
from sagaway.observe._config_file import read_config_text
from sagaway.observe._time import parse_duration

__all__ = [
    "DEFAULT_ALERTS",
    "AlertRule",
    "Filter",
    "Indicator",
    "SloDefinition",
    "SloSpec",
    "SloSpecError",
    "Window",
    "load_slo_spec",
    "parse_slo_spec",
]


class SloSpecError(ObserveError, ConfigurationError):
    """An SLO specification that cannot be used; the message says where and how to fix it.
    A `ConfigurationError`, hence also a ValueError."""


_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}


@dataclass(frozen=True)
class Window:
    """The compliance window: rolling (`seconds` long, ending at the evaluation time) or
    calendar (`calendar` is 'month' or 'week', UTC, from its start to the evaluation time)."""

    label: str
    seconds: float | None = None
    calendar: str | None = None


@dataclass(frozen=True)
class AlertRule:
    """Fire when the burn rate over both `long` and `short` windows is at least `threshold`."""

    severity: str
    long: str
    short: str
    threshold: float

    @property
    def long_seconds(self) -> float:
        return parse_duration(self.long)

    @property
    def short_seconds(self) -> float:
        return parse_duration(self.short)


# The multi-window, multi-burn-rate alerts of the SRE Workbook ("Alerting on SLOs"): for a 30-day
# window, spending 2% of the budget in 1 hour (burn rate 14.4) or 5% in 6 hours (6) pages;
# 10% in 1 day (3) or 10% in 3 days (1) opens a ticket. The short window makes an alert stop
# soon after the burning stops.
DEFAULT_ALERTS: tuple[AlertRule, ...] = (
    AlertRule("page", "1h", "5m", 14.4),
    AlertRule("page", "6h", "30m", 6.0),
    AlertRule("ticket", "1d", "2h", 3.0),
    AlertRule("ticket", "3d", "6h", 1.0),
)


@dataclass(frozen=True)
class Indicator:
    """What makes a request bad. `availability`: its status is in `bad_status` (classes such as
    '5xx' or exact codes). `latency`: request + target + response processing time is above
    `threshold` seconds. For both, a request the load balancer could not send to a target
    (a processing time of -1, or a 5xx with no target status) is bad."""

    type: str
    bad_status: tuple[str, ...] = ("5xx",)
    threshold: float | None = None


@dataclass(frozen=True)
class Filter:
    """Which requests the SLO is about; every given part must match (empty: all requests).
    Hosts compare case-insensitively, without port; `path_prefix` matches the start of the path
    (query included); `path_regex` is searched in the path."""

    host: tuple[str, ...] = ()
    path_prefix: tuple[str, ...] = ()
    path_regex: str | None = None
    method: tuple[str, ...] = ()


@dataclass(frozen=True)
class SloDefinition:
    """One service level objective. `objective` is a fraction (99.9% -> 0.999)."""

    name: str
    objective: float
    window: Window
    indicator: Indicator
    filter: Filter = field(default_factory=Filter)
    min_requests: int = 100
    alerts: tuple[AlertRule, ...] = DEFAULT_ALERTS
    description: str = ""

    @property
    def budget(self) -> float:
        """The allowed fraction of bad requests, 1 - objective (0.999 -> exactly 0.001)."""
        return round(1.0 - self.objective, 12)


@dataclass(frozen=True)
class SloSpec:
    """A validated specification: the service, its SLOs, and options for `slo rules`."""

    service: str
    slos: tuple[SloDefinition, ...]
    prometheus: dict[str, Any] = field(default_factory=dict)
    source: str = "<spec>"


class _Lines:
    """Remembers the line of every key path while turning YAML nodes into Python values."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[tuple[Any, ...], int] = {}

    def value(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in out:
                    self.lines[(*path, key)] = key_node.start_mark.line + 1
                    raise self.error((*path, key), "appears twice; keep one")
                out[key] = self.value(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        return yaml.SafeLoader("").construct_object(node, deep=True)

    def error(self, path: tuple[Any, ...], message: str) -> SloSpecError:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        return SloSpecError(f"{self.source}, line {line}: {where or 'document'}: {message}")


def _keys(
    lines: _Lines, data: Any, path: tuple[Any, ...], allowed: set[str], required: set[str]
) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise lines.error(path, f"expected a mapping with keys {', '.join(sorted(allowed))}")
    for key in data:
        if key not in allowed:
            raise lines.error(
                (*path, key), f"unknown key {key!r}; allowed here: {', '.join(sorted(allowed))}"
            )
    for key in sorted(required):
        if key not in data:
            raise lines.error(path, f"missing required key {key!r}")
    return data


def _strings(lines: _Lines, value: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str | int) and str(v).strip() for v in items):
        raise lines.error(path, "expected a non-empty string or a list of them")
    return tuple(str(v).strip() for v in items)


def _window(lines: _Lines, value: Any, path: tuple[Any, ...]) -> Window:
    if isinstance(value, dict):
        data = _keys(lines, value, path, {"rolling", "calendar"}, set())
        if len(data) != 1:
            raise lines.error(path, "give exactly one of rolling: 30d or calendar: month")
        kind, value = next(iter(data.items()))
        path = (*path, kind)
        if kind == "calendar" and value not in ("month", "week"):
            raise lines.error(path, f"calendar window {value!r}: use month or week")
    if value in ("month", "week"):
        return Window(label=str(value), calendar=str(value))
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise lines.error(path, f"{exc}; or use a calendar window: month, week") from None
    if seconds < 3600:
        raise lines.error(path, f"window {value!r} is too short for an SLO: use 1h or more")
    _whole_minutes(lines, path, value, seconds)
    return Window(label=str(value).strip(), seconds=seconds)


def _whole_minutes(lines: _Lines, path: tuple[Any, ...], value: Any, seconds: float) -> None:
    # Requests are counted per minute: a window cut inside a minute could not be exact.
    if seconds % 60:
        raise lines.error(
            path,
            f"window {value!r} is not a whole number of minutes; write e.g. "
            f"{max(1, round(seconds / 60))}m",
        )


def _objective(lines: _Lines, value: Any, path: tuple[Any, ...]) -> float:
    text = str(value).strip().rstrip("%")
    try:
        percent = float(text)
    except ValueError:
        percent = float("nan")
    if isinstance(value, bool) or not 0 < percent < 100:
        raise lines.error(
            path, f"objective {value!r} must be a percentage between 0 and 100, e.g. 99.9"
        )
    if percent <= 1:
        raise lines.error(
            path,
            f"objective {value!r} is read as {percent:g} percent: objectives are percentages, "
            f"write {percent * 100:g} for {percent * 100:g}%",
        )
    return round(percent / 100.0, 12)


def _indicator(lines: _Lines, value: Any, path: tuple[Any, ...]) -> Indicator:
    data = _keys(lines, value, path, {"type", "bad_status", "threshold"}, {"type"})
    kind = data["type"]
    if kind == "availability":
        if "threshold" in data:
            raise lines.error((*path, "threshold"), "only latency indicators take a threshold")
        statuses = _strings(lines, data.get("bad_status", ["5xx"]), (*path, "bad_status"))
        for status in statuses:
            if not (_STATUS_CLASS.match(status) or (status.isdigit() and 100 <= int(status) < 600)):
                raise lines.error(
                    (*path, "bad_status"),
                    f"{status!r} is neither a status class like 5xx nor a code like 503",
                )
        return Indicator(type="availability", bad_status=tuple(s.lower() for s in statuses))
    if kind == "latency":
        if "bad_status" in data:
            raise lines.error((*path, "bad_status"), "only availability indicators take bad_status")
        if "threshold" not in data:
            raise lines.error(path, "a latency indicator needs threshold: seconds, e.g. 0.3")
        raw = data["threshold"]
        try:
            threshold = (
                float(raw)
                if isinstance(raw, int | float) and not isinstance(raw, bool)
                else parse_duration(raw)
            )
        except ValueError:
            threshold = -1.0
        if threshold <= 0:
            raise lines.error(
                (*path, "threshold"), f"{raw!r}: give seconds as a number (0.3) or 300ms"
            )
        if isinstance(raw, int | float) and threshold > 60:
            raise lines.error(
                (*path, "threshold"),
                f"{raw!r} is read as {raw} seconds: a bare number is seconds (0.3 is 300 ms); "
                "write a threshold above a minute with its unit, e.g. 2m",
            )
        return Indicator(type="latency", bad_status=(), threshold=threshold)
    raise lines.error(
        (*path, "type"), f"unknown indicator type {kind!r}: use availability or latency"
    )


def _filter(lines: _Lines, value: Any, path: tuple[Any, ...]) -> Filter:
    data = _keys(lines, value, path, {"host", "path_prefix", "path_regex", "method"}, set())
    methods = _strings(lines, data["method"], (*path, "method")) if "method" in data else ()
    for method in methods:
        if method.upper() not in _METHODS:
            raise lines.error((*path, "method"), f"{method!r} is not an HTTP method")
    prefixes = (
        _strings(lines, data["path_prefix"], (*path, "path_prefix"))
        if "path_prefix" in data
        else ()
    )
    for prefix in prefixes:
        if not prefix.startswith("/"):
            raise lines.error((*path, "path_prefix"), f"{prefix!r} must start with /")
    regex = data.get("path_regex")
    if regex is not None:
        try:
            re.compile(str(regex))
        except re.error as exc:
            raise lines.error((*path, "path_regex"), f"invalid regular expression: {exc}") from None
        if re.search(r"\(\?<?[=!]|\\[1-9]", str(regex)):
            raise lines.error(
                (*path, "path_regex"),
                "lookarounds and backreferences are not supported (RE2 syntax); "
                "use path_prefix or a plain pattern",
            )
    hosts = _strings(lines, data["host"], (*path, "host")) if "host" in data else ()
    return Filter(
        host=tuple(h.lower() for h in hosts),
        path_prefix=prefixes,
        path_regex=None if regex is None else str(regex),
        method=tuple(m.upper() for m in methods),
    )


def _alerts(lines: _Lines, value: Any, path: tuple[Any, ...]) -> tuple[AlertRule, ...]:
    if not isinstance(value, list) or not value:
        raise lines.error(path, "expected a list of {severity, long, short, threshold}")
    rules = []
    for i, item in enumerate(value):
        where = (*path, i)
        data = _keys(
            lines,
            item,
            where,
            {"severity", "long", "short", "threshold"},
            {"severity", "long", "short", "threshold"},
        )
        for key in ("long", "short"):
            try:
                seconds = parse_duration(data[key])
            except ValueError as exc:
                raise lines.error((*where, key), str(exc)) from None
            _whole_minutes(lines, (*where, key), data[key], seconds)
        if parse_duration(data["short"]) >= parse_duration(data["long"]):
            raise lines.error(
                (*where, "short"), "the short window must be shorter than the long one"
            )
        threshold = data["threshold"]
        if not isinstance(threshold, int | float) or isinstance(threshold, bool) or threshold <= 0:
            raise lines.error((*where, "threshold"), "a burn rate threshold is a positive number")
        rules.append(
            AlertRule(
                str(data["severity"]), str(data["long"]), str(data["short"]), float(threshold)
            )
        )
    return tuple(rules)


def _min_requests(lines: _Lines, value: Any, path: tuple[Any, ...]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise lines.error(
            path, f"{value!r}: give a whole number of requests (0 disables the guard)"
        )
    return value


_SLO_KEYS = {
    "name",
    "objective",
    "window",
    "indicator",
    "filter",
    "min_requests",
    "alerts",
    "description",
}


def parse_slo_spec(text: str, source: str = "<spec>") -> SloSpec:
    """Validate the YAML `text`; raises `SloSpecError` naming `source`, the line and the key."""
    lines = _Lines(source)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise SloSpecError(f"{source}, line {line}: not valid YAML: {exc}") from None
    if node is None:
        raise SloSpecError(f"{source}: the file is empty; see docs/slo.md for an example")
    data = _keys(
        lines,
        lines.value(node, ()),
        (),
        {"service", "slos", "defaults", "prometheus"},
        {"service", "slos"},
    )
    if not isinstance(data["service"], str) or not data["service"].strip():
        raise lines.error(("service",), "give the service a name")
    defaults = _keys(
        lines, data.get("defaults", {}), ("defaults",), {"min_requests", "alerts"}, set()
    )
    default_min = (
        _min_requests(lines, defaults["min_requests"], ("defaults", "min_requests"))
        if "min_requests" in defaults
        else 100
    )
    default_alerts = (
        _alerts(lines, defaults["alerts"], ("defaults", "alerts"))
        if "alerts" in defaults
        else DEFAULT_ALERTS
    )
    if not isinstance(data["slos"], list) or not data["slos"]:
        raise lines.error(("slos",), "expected a non-empty list of SLOs")
    slos: list[SloDefinition] = []
    for i, item in enumerate(data["slos"]):
        path = ("slos", i)
        entry = _keys(lines, item, path, _SLO_KEYS, {"name", "objective", "window", "indicator"})
        name = str(entry["name"])
        if not _NAME.match(name):
            raise lines.error((*path, "name"), f"{name!r}: use lower-case letters, digits, - _ .")
        if any(s.name == name for s in slos):
            raise lines.error((*path, "name"), f"another SLO is already named {name!r}")
        slos.append(
            SloDefinition(
                name=name,
                objective=_objective(lines, entry["objective"], (*path, "objective")),
                window=_window(lines, entry["window"], (*path, "window")),
                indicator=_indicator(lines, entry["indicator"], (*path, "indicator")),
                filter=_filter(lines, entry["filter"], (*path, "filter"))
                if "filter" in entry
                else Filter(),
                min_requests=_min_requests(lines, entry["min_requests"], (*path, "min_requests"))
                if "min_requests" in entry
                else default_min,
                alerts=_alerts(lines, entry["alerts"], (*path, "alerts"))
                if "alerts" in entry
                else default_alerts,
                description=str(entry.get("description", "")),
            )
        )
    prometheus = data.get("prometheus", {})
    if not isinstance(prometheus, dict):
        raise lines.error(("prometheus",), "expected a mapping (see docs/slo.md)")
    return SloSpec(
        service=data["service"].strip(), slos=tuple(slos), prometheus=prometheus, source=source
    )


def load_slo_spec(path: str | Path) -> SloSpec:
    """Read and validate an SLO specification file (`SloSpecError` on any problem)."""
    text = read_config_text(path, SloSpecError, "the SLO specification")
    return parse_slo_spec(text, str(path))
