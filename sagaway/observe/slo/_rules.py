"""Prometheus recording and alerting rules for the SLOs of a specification.

For users whose request metrics already live in Prometheus: the same error ratios, burn rates,
low-traffic guard and multi-window alerts as `sagaway slo report`, computed by Prometheus from a
request counter (availability) or a request-duration histogram (latency). The metric and label
names are set in the specification's `prometheus:` section (defaults below).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from sagaway.observe.slo._burn_rates import BURN_WINDOWS
from sagaway.observe.slo._spec import SloDefinition, SloSpec, SloSpecError

__all__ = ["PROMETHEUS_DEFAULTS", "prometheus_rules"]

PROMETHEUS_DEFAULTS: dict[str, Any] = {
    "requests": "http_requests_total",  # counter with a status code label
    "duration": "http_request_duration_seconds",  # histogram: _bucket{le}, _count
    "status_label": "code",
    "labels": {"host": "host", "method": "method", "path": "path"},
    "selector": {},  # extra label matchers for every series, e.g. {job: shop}
}


def _options(spec: SloSpec) -> dict[str, Any]:
    options = {**PROMETHEUS_DEFAULTS, "labels": dict(PROMETHEUS_DEFAULTS["labels"])}
    for key, value in spec.prometheus.items():
        if key not in PROMETHEUS_DEFAULTS:
            raise SloSpecError(
                f"{spec.source}: prometheus.{key}: unknown key; allowed: "
                + ", ".join(sorted(PROMETHEUS_DEFAULTS))
            )
        if key in ("labels", "selector"):
            if not isinstance(value, dict):
                raise SloSpecError(f"{spec.source}: prometheus.{key}: expected a mapping")
            if key == "labels":
                unknown = set(value) - set(PROMETHEUS_DEFAULTS["labels"])
                if unknown:
                    raise SloSpecError(
                        f"{spec.source}: prometheus.labels.{sorted(unknown)[0]}: only host, "
                        "method and path filters map to labels"
                    )
                options["labels"].update({k: str(v) for k, v in value.items()})
            else:
                options["selector"] = {str(k): str(v) for k, v in value.items()}
        else:
            options[key] = str(value)
    for name in ("requests", "duration", "status_label", *options["labels"].values()):
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
            raise SloSpecError(f"{spec.source}: prometheus: {name!r} is not a metric or label name")
    return options


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternatives(values: tuple[str, ...]) -> str:
    return "|".join(re.escape(v) for v in values)


def _le_values(threshold: float) -> list[str]:
    """Spellings of a bucket bound that Prometheus clients write (Go: 0.3, 1; Python: 1.0)."""
    spellings = {repr(float(threshold)), f"{threshold:g}"}
    return sorted(spellings)


def _selector(slo: SloDefinition, options: dict[str, Any], extra: dict[str, str]) -> str:
    matchers = [f"{k}={_quote(v)}" for k, v in options["selector"].items()]
    labels = options["labels"]
    f = slo.filter
    if f.host:
        matchers.append(f"{labels['host']}=~{_quote(_alternatives(f.host))}")
    if f.method:
        matchers.append(f"{labels['method']}=~{_quote(_alternatives(f.method))}")
    paths = []
    if f.path_prefix:
        paths.append(f"({_alternatives(f.path_prefix)}).*")
    if f.path_regex is not None:
        paths.append(f".*({f.path_regex}).*")
    for pattern in paths:
        matchers.append(f"{labels['path']}=~{_quote(pattern)}")
    matchers += [f"{k}=~{_quote(v)}" for k, v in extra.items()]
    return "{" + ",".join(matchers) + "}"


def _error_ratio(slo: SloDefinition, options: dict[str, Any], window: str) -> tuple[str, str]:
    """(error ratio expression, request count expression) over `window`."""
    if slo.indicator.type == "availability":
        codes = "|".join(f"{s[0]}.." if s.endswith("xx") else s for s in slo.indicator.bad_status)
        metric = options["requests"]
        bad = _selector(slo, options, {options["status_label"]: codes})
        everything = _selector(slo, options, {})
        ratio = f"sum(rate({metric}{bad}[{window}]))\n/\nsum(rate({metric}{everything}[{window}]))"
        return ratio, f"sum(increase({metric}{everything}[{window}]))"
    metric = options["duration"]
    le = "|".join(re.escape(v) for v in _le_values(slo.indicator.threshold or 0))
    fast = _selector(slo, options, {"le": le})
    everything = _selector(slo, options, {})
    ratio = (
        f"1 - (\n  sum(rate({metric}_bucket{fast}[{window}]))\n  /\n"
        f"  sum(rate({metric}_count{everything}[{window}]))\n)"
    )
    return ratio, f"sum(increase({metric}_count{everything}[{window}]))"


def _number(value: float) -> str:
    return repr(round(value, 12))


def prometheus_rules(spec: SloSpec) -> str:
    """The rules file (YAML) for every SLO of `spec`: recording rules
    `slo:sli_error:ratio_rate<w>` and `slo:requests:increase<w>` for each burn window,
    `slo:objective:ratio`, and one `ErrorBudgetBurn` alert per window pair.

    Raises SloSpecError (a ValueError) naming the key of an invalid `prometheus:` section."""
    options = _options(spec)
    groups = []
    for slo in spec.slos:
        labels = {"service": spec.service, "slo": slo.name}
        windows = list(BURN_WINDOWS)
        for rule in slo.alerts:
            windows += [w for w in (rule.long, rule.short) if w not in windows]
        recording: list[dict[str, Any]] = [
            {
                "record": "slo:objective:ratio",
                "expr": f"vector({_number(slo.objective)})",
                "labels": labels,
            }
        ]
        for window in windows:
            ratio, count = _error_ratio(slo, options, window)
            recording.append(
                {"record": f"slo:sli_error:ratio_rate{window}", "expr": ratio, "labels": labels}
            )
            recording.append(
                {"record": f"slo:requests:increase{window}", "expr": count, "labels": labels}
            )
        match = "{" + ",".join(f"{k}={_quote(v)}" for k, v in labels.items()) + "}"
        alerts = []
        for rule in slo.alerts:
            level = _number(rule.threshold * slo.budget)
            parts = [
                f"slo:sli_error:ratio_rate{rule.long}{match} >= {level}",
                f"slo:sli_error:ratio_rate{rule.short}{match} >= {level}",
            ]
            if slo.min_requests > 0:
                parts += [
                    f"slo:requests:increase{rule.long}{match} >= {slo.min_requests}",
                    f"slo:requests:increase{rule.short}{match} >= {slo.min_requests}",
                ]
            alerts.append(
                {
                    "alert": "ErrorBudgetBurn",
                    "expr": "\nand on (service, slo)\n".join(f"({p})" for p in parts),
                    "labels": {
                        **labels,
                        "severity": rule.severity,
                        "long_window": rule.long,
                        "short_window": rule.short,
                    },
                    "annotations": {
                        "summary": f"{spec.service} {slo.name} is burning its error budget",
                        "description": (
                            f"Burn rate at or above {rule.threshold:g} over both {rule.long} "
                            f"and {rule.short} (objective {slo.objective * 100:g}% over "
                            f"{slo.window.label})."
                        ),
                    },
                }
            )
        groups.append({"name": f"slo-{spec.service}-{slo.name}-recording", "rules": recording})
        groups.append({"name": f"slo-{spec.service}-{slo.name}-alerts", "rules": alerts})
    header = (
        f"# Prometheus rules for the SLOs of {spec.service} ({spec.source}).\n"
        "# Generated by `sagaway slo rules`; check with `promtool check rules`.\n"
    )
    return header + yaml.dump({"groups": groups}, Dumper=_RulesDumper, sort_keys=False, width=100)


class _RulesDumper(yaml.SafeDumper):
    """Plain YAML for people: no anchors, multi-line expressions as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RulesDumper.add_representer(str, _string)
