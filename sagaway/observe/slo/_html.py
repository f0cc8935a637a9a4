"""A self-contained HTML SLO report: numbers, a budget burn-down chart and a burn-rate chart per
SLO, drawn as inline SVG by the code below (no script, no network, nothing to download)."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sagaway.observe.slo._burn_rates import SloReport, SloResult
from sagaway.observe.slo._report import report_time

__all__ = ["report_html"]

_COLORS = {"1h": "#d62728", "6h": "#ff7f0e", "1d": "#1f77b4", "3d": "#2ca02c"}
_EXTRA_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:960px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-top:1px solid #dde;
padding-top:20px}.muted{color:#667}.tiles{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.tile{border:1px solid #dde;border-radius:8px;padding:8px 14px;min-width:120px}
.tile b{display:block;font-size:20px}.bad{color:#c62828}.good{color:#2e7d32}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eef;
text-align:right}th:first-child,td:first-child{text-align:left}.fire{background:#fdecea;
font-weight:600}svg{display:block;margin:6px 0 14px}svg text{font:11px system-ui,sans-serif;
fill:#556}.legend{font-size:12px;margin-top:6px}.legend span{margin-right:14px}
.note{background:#fff8e1;border-radius:6px;padding:6px 10px}
"""


@dataclass(frozen=True)
class _Line:
    label: str
    color: str
    points: Sequence[tuple[float, float]]
    dash: str = ""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _time_ticks(lo: float, hi: float, count: int = 6) -> list[tuple[float, str]]:
    span = max(hi - lo, 60.0)
    steps = (3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400)
    step = next((s for s in steps if span / s <= count), 30 * 86400)
    first = math.ceil(lo / step) * step
    fmt = "%b %d %H:%M" if step < 86400 else "%b %d"
    out = []
    t = first
    while t <= hi:
        out.append((t, datetime.fromtimestamp(t, UTC).strftime(fmt)))
        t += step
    return out


def _chart(
    lines: Sequence[_Line],
    *,
    x_range: tuple[float, float],
    y_ticks: Sequence[tuple[float, str]],
    y_map: Callable[[float], float],
    marks: Sequence[tuple[float, str, str]] = (),
    title: str,
    width: int = 900,
    height: int = 250,
) -> str:
    """An SVG line chart: time on x, `y_map` placing values in [0, 1], horizontal `marks`."""
    left, right, top, bottom = 64, 96, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    x0, x1 = x_range
    scale = plot_w / max(x1 - x0, 1.0)

    def px(t: float) -> float:
        return left + (t - x0) * scale

    def py(v: float) -> float:
        return top + plot_h * (1 - min(max(y_map(v), 0.0), 1.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{_esc(title)}</title>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafbfd" '
        'stroke="#dde"/>',
    ]
    for value, label in y_ticks:
        y = py(value)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_esc(label)}</text>'
        )
    for t, label in _time_ticks(x0, x1):
        x = px(t)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eef"/>'
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">{_esc(label)}</text>'
        )
    for value, label, color in marks:
        y = py(value)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
            f'stroke-dasharray="4 3"/><text x="{left + plot_w + 6}" y="{y + 4:.1f}" '
            f'fill="{color}">{_esc(label)}</text>'
        )
    for line in lines:
        if not line.points:
            continue
        path = " ".join(f"{px(t):.1f},{py(v):.1f}" for t, v in line.points)
        dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
        last_t, last_v = line.points[-1]
        parts.append(
            f'<polyline class="series" fill="none" stroke="{line.color}" stroke-width="1.8"'
            f'{dash} points="{path}"><title>{_esc(line.label)}</title></polyline>'
            f'<circle cx="{px(last_t):.1f}" cy="{py(last_v):.1f}" r="3" fill="{line.color}"/>'
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span style="color:{line.color}">&#9632; {_esc(line.label)}</span> ' for line in lines
    )
    return f'<div class="legend">{legend}</div>' + "".join(parts)


def _burn_down_chart(r: SloResult) -> str:
    lo, hi = r.window_start, r.period_end
    values = [v for _, v in r.burn_down] + [1.0, 0.0]
    y_lo = min(min(values), 0.0)
    y_hi = 1.0
    if y_lo < -1:
        y_lo = math.floor(y_lo)
    span = y_hi - y_lo
    step = next(s for s in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 50, 100) if span / s <= 6)
    ticks = []
    tick = 1.0
    while tick >= y_lo - 1e-9:
        ticks.append((tick, f"{tick * 100:.0f}%"))
        tick -= step
    ideal = _Line("even spend", "#9aa5b8", [(lo, 1.0), (hi, 0.0)], dash="5 4")
    actual = _Line("budget left", "#3b5bdb", r.burn_down)
    return _chart(
        [actual, ideal],
        x_range=(lo, hi),
        y_ticks=ticks,
        y_map=lambda v: (v - y_lo) / span,
        marks=[(0.0, "exhausted", "#c62828")],
        title=f"{r.slo.name}: error budget remaining over the window",
    )


def _burn_rate_chart(r: SloResult) -> str:
    top = max([1.0, *(v for pts in r.burn_history.values() for _, v in pts)])
    ceiling = math.log10(1 + max(top * 1.2, 20.0))

    def y_map(v: float) -> float:
        return math.log10(1 + max(v, 0.0)) / ceiling

    candidates = (0, 1, 3, 6, 14.4, 50, 100, 300, 1000, 3000, 10000)
    ticks = [(v, f"{v:g}") for v in candidates if math.log10(1 + v) <= ceiling]
    lines = []
    extra = iter(_EXTRA_COLORS)
    for label, points in r.burn_history.items():
        color = _COLORS.get(label) or next(extra, "#444")
        lines.append(_Line(f"{label} burn", color, points))
    marks = []
    seen = set()
    for alert in r.alerts:
        if alert.threshold in seen:
            continue
        seen.add(alert.threshold)
        color = "#c62828" if alert.severity == "page" else "#ef6c00"
        marks.append((alert.threshold, f"{alert.severity} {alert.threshold:g}", color))
    points = next(iter(r.burn_history.values()), [(r.window_start, 0.0), (r.window_end, 0.0)])
    return _chart(
        lines,
        x_range=(points[0][0], points[-1][0]),
        y_ticks=ticks,
        y_map=y_map,
        marks=marks,
        title=f"{r.slo.name}: burn rate over each alert's long window",
    )


def _section(r: SloResult, first_log: float | None) -> str:
    slo = r.slo
    remaining = r.error_budget.remaining
    firing = [a for a in r.alerts if a.firing]
    what = (
        f"availability (bad: {', '.join(slo.indicator.bad_status)})"
        if slo.indicator.type == "availability"
        else f"latency (bad: slower than {slo.indicator.threshold:g} s)"
    )
    rows = []
    for a in r.alerts:
        reached = a.long_burn_rate >= a.threshold and a.short_burn_rate >= a.threshold
        if a.firing:
            state = "FIRING"
        elif a.low_traffic:
            state = "held back: low traffic" if reached else "ok (low traffic)"
        else:
            state = "ok"
        rows.append(
            f'<tr class="{"fire" if a.firing else ""}"><td>{_esc(a.severity)}</td>'
            f"<td>{_esc(a.long)} &amp; {_esc(a.short)}</td><td>{a.threshold:g}</td>"
            f"<td>{a.long_burn_rate:.2f}</td><td>{a.short_burn_rate:.2f}</td>"
            f"<td>{state}</td></tr>"
        )
    burn_cells = "".join(f"<th>{_esc(k)}</th>" for k in r.burn_rates if k in r.window_requests)
    burn_values = "".join(f"<td>{v:.2f}</td>" for v in r.burn_rates.values())
    note = ""
    if first_log is not None and first_log > r.window_start:
        days = (r.window_end - first_log) / 86400
        note = (
            f'<p class="note">The logs cover only the last {days:.1f} days of this '
            f"{_esc(slo.window.label)} window.</p>"
        )
    sli = "-" if r.sli is None else f"{r.sli * 100:.3f}%"
    sli_class = "good" if (r.sli or 1) >= slo.objective else "bad"
    budget_class = "good" if remaining > 0 else "bad"
    return f"""
<section id="{_esc(slo.name)}">
<h2>{_esc(slo.name)} <span class="muted">{_esc(what)}</span></h2>
{f"<p>{_esc(slo.description)}</p>" if slo.description else ""}
<div class="tiles">
<div class="tile">objective<b>{slo.objective * 100:g}%</b></div>
<div class="tile">SLI<b class="{sli_class}">{sli}</b></div>
<div class="tile">budget left<b class="{budget_class}">{remaining * 100:.1f}%</b></div>
<div class="tile">requests<b>{r.total:,}</b></div>
<div class="tile">bad<b>{r.bad:,}</b></div>
<div class="tile">alerts<b class="{"bad" if firing else "good"}">
{_esc(", ".join(sorted({a.severity for a in firing})) or "none")}</b></div>
</div>
<p class="muted">Window {_esc(slo.window.label)}: {_esc(report_time(r.window_start))} to
{_esc(report_time(r.window_end))}. Budget: {r.error_budget.allowed:,.1f} bad requests allowed,
{r.error_budget.consumed * 100:.1f}% consumed.</p>
{note}
<h3>Error budget burn-down</h3>
{_burn_down_chart(r)}
<h3>Burn rates</h3>
<table><tr>{burn_cells}</tr><tr>{burn_values}</tr></table>
{_burn_rate_chart(r)}
<table><tr><th>severity</th><th>windows</th><th>threshold</th><th>long</th><th>short</th>
<th>state</th></tr>{"".join(rows)}</table>
</section>"""


def report_html(report: SloReport) -> str:
    """One self-contained HTML document for the whole report."""
    src = report.source
    quarantine = (
        f" {src.malformed} malformed lines set aside in <code>{_esc(src.quarantine)}</code>."
        if src.malformed
        else ""
    )
    sections = "".join(_section(r, src.first) for r in report.results)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(report.spec.service)} SLO report</title><style>{_CSS}</style></head>
<body>
<h1>{_esc(report.spec.service)}: SLO report</h1>
<p class="muted">Evaluated at {_esc(report_time(report.at))} from {src.files} files, {src.lines:,}
lines ({src.parsed:,} parsed).{quarantine}</p>
{sections}
</body></html>
"""
