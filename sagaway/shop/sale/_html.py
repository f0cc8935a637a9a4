"""`report.html`: the sale's report as one self-contained page (inline CSS and SVG, nothing
loaded from elsewhere), made from the same data as `report.json`."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

__all__ = ["report_page"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}
td,th{padding:.25rem .6rem;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#176f2c;font-weight:600}.bad{color:#b00020;font-weight:600}
.src{color:#666;font-size:.85em}pre{background:#f6f6f6;padding:.75rem;overflow:auto}
.verdict{font-size:1.2rem;padding:.6rem 1rem;border-radius:4px}
.verdict.ok{background:#e6f4ea}.verdict.bad{background:#fde7ea}
"""


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _num(value: Any) -> str:
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _e(value)
    return f'<td class="n">{text}</td>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _chart(report: dict[str, Any]) -> str:
    """Responses per second (ok green, shed 503 orange, other red) with the phases marked and
    the p99 of each second as a line on its own scale."""
    seconds = report["per_second"]
    if not seconds:
        return "<p>no responses</p>"
    width, height, pad = 960, 220, 30
    peak = max(1, *(s["ok"] + s["shed"] + s["other"] for s in seconds))
    slowest = max([1.0, *(s["p99_ms"] or 0 for s in seconds)])
    step = (width - 2 * pad) / len(seconds)
    parts = [f'<svg viewBox="0 0 {width} {height + 40}" width="100%" role="img">']
    for phase in report["phases"]:
        x = pad + phase["start_s"] * step
        parts.append(
            f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height}" stroke="#999" '
            f'stroke-dasharray="3 3"/><text x="{x + 2:.1f}" y="{height + 14}" font-size="11">'
            f"{_e(phase['name'])}</text>"
        )
    for s in seconds:
        x, base = pad + s["t"] * step, float(height)
        for key, colour in (("ok", "#3a9d5d"), ("shed", "#f0a030"), ("other", "#c0392b")):
            h = s[key] / peak * (height - 20)
            if h > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{max(step - 0.5, 0.5):.1f}" '
                    f'height="{h:.1f}" fill="{colour}"/>'
                )
                base -= h
    points = " ".join(
        f"{pad + s['t'] * step + step / 2:.1f},{height - s['p99_ms'] / slowest * (height - 20):.1f}"
        for s in seconds
        if s["p99_ms"] is not None
    )
    parts.append(f'<polyline points="{points}" fill="none" stroke="#2855c8" stroke-width="1.5"/>')
    parts.append(
        f'<text x="{pad}" y="{height + 32}" font-size="11">bars: responses per second, peak '
        f"{peak:,} (green ok, orange 503 shed, red other); blue line: p99 latency of each second, "
        f"top = {slowest:,.0f} ms</text></svg>"
    )
    return "".join(parts)


def _invariants(report: dict[str, Any]) -> str:
    rows = []
    for i in report["invariants"]:
        mark = '<td class="ok">ok</td>' if i["ok"] else '<td class="bad">BROKEN</td>'
        detail = f" ({_e(i['detail'])})" if i["detail"] else ""
        rows.append(
            [
                mark,
                f"<td>{_e(i['name'])}{detail}</td>",
                _num(i["value"]),
                _num(i["must_be"]),
                f'<td class="src">{_e(i["source"])}</td>',
            ]
        )
    return _table(["", "invariant", "value", "must be", "source"], rows)


def _latency(report: dict[str, Any]) -> str:
    keys = ("requests", "ok", "shed_503", "no_response", "p50_ms", "p99_ms", "ok_p99_ms")
    rows = [
        [f"<td>{_e(route)}</td>", *(_num(f[k]) for k in keys)]
        for route, f in report["latency"].items()
    ]
    header = ["endpoint", "requests", "ok", "503 shed", "no response", "p50 ms", "p99 ms"]
    return _table([*header, "p99 ms of ok"], rows)


def _phases(report: dict[str, Any]) -> str:
    rows = []
    for p in report["phases"]:
        faults = ", ".join(f"{k}: {v}" for k, v in p["faults"].items()) or "-"
        rows.append(
            [
                f"<td>{_e(p['name'])}</td>",
                f"<td>{_e(p['description'])}</td>",
                _num(f"{p['start_s']:.0f}-{p['end_s']:.0f} s"),
                _num(p["target_rate"]),
                _num(p["arrivals"]),
                _num(p["requests"]),
                _num(p["shed_503"]),
                _num(p["p50_ms"]),
                _num(p["p99_ms"]),
                _num(p["generator_lag"]["p99_ms"]),
                f"<td>{_e(faults)}</td>",
            ]
        )
    header = ["phase", "what happens", "when", "customers/s", "arrivals", "requests", "503 shed"]
    return _table([*header, "p50 ms", "p99 ms", "generator lag p99 ms", "faults"], rows)


def _pairs(data: dict[str, Any]) -> str:
    return _table(["", ""], [[f"<td>{_e(k)}</td>", _num(v)] for k, v in data.items()])


_CHANGES = {
    "fired": "fired",
    "cleared": "cleared",
    "quiet": "stopped: too few requests to judge",
}


def _alerts(report: dict[str, Any]) -> str:
    changes = report["slo"]["alert_changes"]
    if not changes:
        return "<p>No SLO alert fired.</p>"
    rows = [
        [
            _num(f"{c['at'] - report['started_at']:.0f} s"),
            f"<td>{_e(c['slo'])}</td>",
            f"<td>{_e(c['severity'])}</td>",
            f'<td class="{"bad" if c["change"] == "fired" else "ok"}">'
            f"{_e(_CHANGES[c['change']])}</td>",
            _num(f"{c['long_burn_rate']} / {c['short_burn_rate']}"),
        ]
        for c in changes
    ]
    return _table(["at (since start)", "SLO", "severity", "", "burn rates long / short"], rows)


def _gray(report: dict[str, Any]) -> str:
    gray = report["gray_failure_alarm"]
    d = gray["definition"]
    intro = (
        f"<p>{_e(d['name'])}: callers of {_e(d['saga'])}/{_e(d['step'])} see an error rate of "
        f"at least {d['error_rate']:g} or an average try of {d['latency']:g} s (over at least "
        f"{d['min_calls']} tries a minute) while {_e(gray['probe'])} says healthy.</p>"
    )
    if gray["error"]:
        intro += f'<p class="bad">Could not be evaluated: {_e(gray["error"])}</p>'
    if not gray["evaluations"]:
        return intro + "<p>No minute ended while the sale ran.</p>"
    rows = [
        [
            _num(f"{g['at'] - report['started_at']:.0f} s"),
            f"<td>{_e(', '.join(g.get('phases', [])) or 'none')}</td>",
            f'<td class="{"bad" if g["state"] == "ALARM" else "ok"}">{_e(g["state"])}</td>',
            f"<td>{_e(g['reason'])}</td>",
        ]
        for g in gray["evaluations"]
    ]
    headers = ["minute ending at (since start)", "phases in the minute", "state", "why"]
    return intro + _table(headers, rows)


def report_page(report: dict[str, Any]) -> str:
    """The page, from the data `build_report` made."""
    ok = report["ok"]
    started = datetime.fromtimestamp(report["started_at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    verdict = "Every invariant holds." if ok else "An invariant is BROKEN."
    src = report["sources"]
    orders = report["orders"]
    timeline = _table(
        ["at", "what"],
        [[_num(f"{e['t']:.1f} s"), f"<td>{_e(e['what'])}</td>"] for e in report["events"]],
    )
    sections = [
        f"<h1>Sale day report: {_e(report['plan'])} run</h1>",
        f"<p>Started {started}; store {_e(report['store'])}, {report['workers']} worker(s), "
        f"load shedding {'on' if report['shedding'] else 'off'}, seed {report['seed']}; "
        f"{report['load_seconds']:.0f} s of load, drained in {report['drain_seconds']} s.</p>",
        f'<p class="verdict {"ok" if ok else "bad"}">{verdict}</p>',
        "<h2>Invariants</h2>",
        _invariants(report),
        "<h2>Traffic</h2>",
        _chart(report),
        f'<p class="src">Source: {_e(src["requests"])}.</p>',
        "<h2>Latency per endpoint</h2>",
        _latency(report),
        f'<p class="src">Source: {_e(src["latency"])}.</p>',
        "<h2>Phases</h2>",
        _phases(report),
        "<h2>Orders</h2>",
        _pairs({**orders["by_status"], "parked and resumed": orders["parked_and_resumed"]}),
        f'<p class="src">Source: {_e(src["orders"])}; parked and resumed: {_e(src["store"])}.</p>',
        "<h2>Customers</h2>",
        _pairs(report["customers"]),
        "<h2>SLOs and alerts</h2>",
        f"<pre>{_e(report['slo_table'])}</pre>",
        _alerts(report),
        f'<p class="src">Source: {_e(src["slo"])}; the full SLO page is slo.html.</p>',
        "<h2>Gray-failure alarm</h2>",
        _gray(report),
        f'<p class="src">Source: {_e(src["gray_failure_alarm"])}.</p>',
        "<h2>Providers and shop at the end</h2>",
        f"<pre>{_e(_json_text(report['providers']))}\n{_e(_json_text(report['shop']))}</pre>",
        f'<p class="src">Source: {_e(src["providers"])}; shop: GET /_shop/stats.</p>',
        "<h2>Timeline</h2>",
        timeline,
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Sale day report</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def _json_text(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=True, default=str)
