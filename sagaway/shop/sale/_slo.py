"""The sale's SLOs, read from the shop's access log with `sagaway.observe.slo`.

A sale lasts minutes, not the 30 days the default alerts are made for, so its specification
scales the alert windows down to minutes (the SLO window is the shortest the specification
allows, 1h): a page fires when the burn rate reaches 14.4 over both the last 2 minutes and the
last minute, a ticket when it reaches 3 over 5 and 2 minutes. The SLOs are evaluated at every
whole minute of the run, which gives the alert timeline: when each alert fired and cleared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagaway.observe.slo import (
    Quarantine,
    SloReport,
    SloResult,
    counter_for,
    evaluate_slo,
    parse_slo_spec,
    report_from_alb,
    report_html,
    report_json,
    scan_alb,
)

__all__ = ["SALE_SLOS", "AlertChange", "SloOutcome", "evaluate_sale_slos"]

SALE_SLOS = """\
service: shop
defaults:
  min_requests: 20
  alerts:
    - {severity: page, long: 2m, short: 1m, threshold: 14.4}
    - {severity: ticket, long: 5m, short: 2m, threshold: 3}
slos:
  - name: checkout-availability
    description: checkout requests answered without a 5xx (a shed 503 counts as bad)
    objective: 99
    window: 1h
    indicator: {type: availability, bad_status: ["5xx"]}
    filter: {path_prefix: /checkouts}
  - name: checkout-latency
    description: checkout requests answered within 500 ms
    objective: 99
    window: 1h
    indicator: {type: latency, threshold: 0.5}
    filter: {path_prefix: /checkouts}
  - name: catalog-availability
    description: catalog reads answered without a 5xx
    objective: 99
    window: 1h
    indicator: {type: availability, bad_status: ["5xx"]}
    filter: {path_prefix: /catalog}
"""
MINUTE = 60.0


@dataclass(frozen=True)
class AlertChange:
    """An SLO alert that started (`fired`) or stopped firing at minute `at`: `cleared` when
    its windows held enough requests to say the burning stopped, `quiet` when they held too
    few to judge (after the load, say)."""

    at: float
    slo: str
    severity: str
    change: str
    burn_rates: tuple[float, float]


@dataclass
class SloOutcome:
    """The SLO report at the end of the sale and the alert changes minute by minute."""

    report: SloReport
    changes: list[AlertChange]
    spec_path: Path
    html_path: Path

    def to_json(self) -> dict[str, Any]:
        """The report (the shape of `sagaway slo report --format json`) and the changes."""
        return {
            "spec": str(self.spec_path),
            "html": str(self.html_path),
            "report": report_json(self.report),
            "alert_changes": [
                {
                    "at": c.at,
                    "slo": c.slo,
                    "severity": c.severity,
                    "change": c.change,
                    "long_burn_rate": round(c.burn_rates[0], 3),
                    "short_burn_rate": round(c.burn_rates[1], 3),
                }
                for c in self.changes
            ],
        }


def _firing(
    result: SloResult,
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]], set[str]]:
    """Severity -> burn rates of its first firing alert; severity -> burn rates of its first
    alert; and the severities with an alert whose windows hold too few requests to judge."""
    firing: dict[str, tuple[float, float]] = {}
    rates: dict[str, tuple[float, float]] = {}
    for alert in result.alerts:
        pair = (alert.long_burn_rate, alert.short_burn_rate)
        rates.setdefault(alert.severity, pair)
        if alert.firing:
            firing.setdefault(alert.severity, pair)
    return firing, rates, {a.severity for a in result.alerts if a.low_traffic}


def evaluate_sale_slos(access_log: Path, out: Path) -> SloOutcome:
    """Evaluate the sale's SLOs over `access_log` at the end and at every whole minute;
    write the specification to `<out>/slo.yaml` and the SLO page to `<out>/slo.html`."""
    spec_path = out / "slo.yaml"
    spec_path.write_text(SALE_SLOS)
    spec = parse_slo_spec(SALE_SLOS, str(spec_path))
    quarantine = str(out / "alb-quarantine.jsonl")
    report = report_from_alb(spec, [str(access_log)], quarantine_path=quarantine)
    html_path = out / "slo.html"
    html_path.write_text(report_html(report))
    changes: list[AlertChange] = []
    source = report.source
    if source.first is not None and report.at is not None:
        with Quarantine(quarantine) as sink:
            scan = scan_alb([str(access_log)], [counter_for(s) for s in spec.slos], quarantine=sink)
        first = math.ceil(source.first / MINUTE) * MINUTE
        minutes = [first + i * MINUTE for i in range(int((report.at - first) / MINUTE) + 1)]
        before: dict[str, dict[str, tuple[float, float]]] = {s.name: {} for s in spec.slos}
        for at in minutes:
            for slo in spec.slos:
                now, rates, quiet = _firing(evaluate_slo(slo, scan.series[slo.name], at, points=10))
                for severity in sorted(set(now) | set(before[slo.name])):
                    if (severity in now) != (severity in before[slo.name]):
                        change = "fired" if severity in now else "cleared"
                        if change == "cleared" and severity in quiet:
                            change = "quiet"
                        pair = now.get(severity) or rates[severity]
                        changes.append(AlertChange(at, slo.name, severity, change, pair))
                before[slo.name] = now
    return SloOutcome(report, changes, spec_path, html_path)
