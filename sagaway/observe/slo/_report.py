"""SLO reports as JSON (a stable shape, see docs/slo.md) and as a plain-text table."""

from __future__ import annotations

import math
from typing import Any

from sagaway.observe._time import iso_time
from sagaway.observe.slo._burn_rates import AlertState, SloReport, SloResult

__all__ = ["burn_rate_text", "firing_text", "report_json", "report_table", "report_time"]


def report_time(seconds: float | None) -> str | None:
    """A time as reports spell it: ISO 8601 UTC with a Z, microseconds only when not zero."""
    return None if seconds is None else iso_time(seconds, digits=6)


def burn_rate_text(value: float) -> str:
    """A burn rate for people: two decimals, none from 100 on."""
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def firing_text(alert: AlertState) -> str:
    """Why an alert fires: `burn rate 15.00 over 1h and 20.00 over 5m (>= 14.4)`."""
    return (
        f"burn rate {burn_rate_text(alert.long_burn_rate)} over {alert.long} and "
        f"{burn_rate_text(alert.short_burn_rate)} over {alert.short} (>= {alert.threshold:g})"
    )


def _sli_digits(objective: float) -> int:
    """Enough decimals to compare the SLI with the objective (5 for 99.9%, 6 for 99.99%)."""
    decimals = 0
    while decimals < 12 and not math.isclose(round(objective, decimals), objective, abs_tol=1e-12):
        decimals += 1
    return max(5, decimals + 2)


def _result_json(r: SloResult) -> dict[str, Any]:
    slo = r.slo
    indicator: dict[str, Any] = {"type": slo.indicator.type}
    if slo.indicator.type == "availability":
        indicator["bad_status"] = list(slo.indicator.bad_status)
    else:
        indicator["threshold"] = slo.indicator.threshold
    return {
        "name": slo.name,
        "objective": slo.objective,
        "window": slo.window.label,
        "total": r.total,
        "bad": r.bad,
        "sli": None if r.sli is None else round(r.sli, _sli_digits(slo.objective)),
        "error_budget": {
            "allowed": round(r.error_budget.allowed, 3),
            "consumed": round(r.error_budget.consumed, 3),
            "remaining": round(r.error_budget.remaining, 3),
        },
        "burn_rates": {k: round(v, 3) for k, v in r.burn_rates.items()},
        "alerts": [
            {
                "severity": a.severity,
                "long": a.long,
                "short": a.short,
                "threshold": a.threshold,
                "firing": a.firing,
                "long_burn_rate": round(a.long_burn_rate, 3),
                "short_burn_rate": round(a.short_burn_rate, 3),
                "low_traffic": a.low_traffic,
            }
            for a in r.alerts
        ],
        "indicator": indicator,
        "window_start": report_time(r.window_start),
        "window_end": report_time(r.window_end),
        "window_requests": r.window_requests,
        "min_requests": slo.min_requests,
    }


def report_json(report: SloReport) -> dict[str, Any]:
    """The report as JSON-ready data: `at`, `source`, `slos` (shape documented in docs/slo.md)."""
    return {
        "at": report_time(report.at),
        "service": report.spec.service,
        "source": report.source.to_dict(),
        "slos": [_result_json(r) for r in report.results],
    }


def _percent(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def report_table(report: SloReport) -> str:
    """A readable plain-text report: one row per SLO, then the alerts that fire."""
    src = report.source
    lines = [
        f"{report.spec.service}: SLO report at {report_time(report.at) or '(no log entries)'}",
        f"read {src.files} files, {src.lines} lines: {src.parsed} parsed, {src.malformed} malformed"
        + (f" (set aside in {src.quarantine})" if src.malformed else ""),
        "",
    ]
    header = ["SLO", "objective", "window", "requests", "bad", "SLI", "budget left"]
    header += [f"burn {w}" for w in ("5m", "1h", "6h", "1d", "3d")] + ["alerts"]
    rows = [header]
    for r in report.results:
        firing = [a for a in r.alerts if a.firing]
        status = ", ".join(sorted({a.severity.upper() for a in firing})) or "ok"
        rows.append(
            [
                r.slo.name,
                _percent(r.slo.objective, 3 if r.slo.objective * 100 % 1 else 0),
                r.slo.window.label,
                f"{r.total:,}",
                f"{r.bad:,}",
                _percent(r.sli),
                _percent(r.error_budget.remaining, 1),
                *(burn_rate_text(r.burn_rates[w]) for w in ("5m", "1h", "6h", "1d", "3d")),
                status,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [
            cell.ljust(w) if i in (0, 2, len(row) - 1) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    notes = []
    for r in report.results:
        for a in r.alerts:
            if a.firing:
                notes.append(f"FIRING {a.severity} {r.slo.name}: {firing_text(a)}")
            elif a.low_traffic and a.long_burn_rate >= a.threshold <= a.short_burn_rate:
                notes.append(
                    f"quiet {a.severity} {r.slo.name}: burn rates over {a.long}/{a.short} reach "
                    f"{a.threshold:g} but fewer than {r.slo.min_requests} requests: not firing"
                )
        if r.total and src.first is not None and src.first > r.window_start:
            days = (r.window_end - src.first) / 86400
            notes.append(
                f"note {r.slo.name}: logs cover only the last {days:.1f} days of the "
                f"{r.slo.window.label} window"
            )
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
