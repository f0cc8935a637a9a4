"""The sale's report: one JSON document (`report.json`), printed as tables in the terminal and
drawn as a self-contained page (`report.html`, see `_html`). Every figure says where it comes
from (`sources`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from sagaway.observe.metrics._series import percentile
from sagaway.observe.slo import report_table
from sagaway.shop.sale._gray import GRAY_ALARM
from sagaway.shop.sale._load import ROUTES, Sample

if TYPE_CHECKING:
    from sagaway.shop.sale._run import SaleRun
    from sagaway.shop.sale._slo import SloOutcome

__all__ = ["SOURCES", "build_report", "print_report", "write_report"]

SOURCES = {
    "requests": "customers: every response the load generator received; a retried request "
    "counts once per try; status 0 is a request that got no response",
    "latency": "customers: time from sending a request to its whole response, per try (not "
    "counting the wait for one of the generator's connections: generator_queue_p99_ms)",
    "phases": "customers, by the phase the response came back in; generator_lag is how late "
    "the load generator's event loop woke up (its latencies include that delay)",
    "shed": "customers: 503 responses; shop: GET /_shop/stats for the shop's own count",
    "orders": "shop: GET /orders/{id} for every order id a purchase response carried",
    "store": "store: the sagaway runs and their `parked` events, read after the sale",
    "providers": "payment, inventory, mail: each provider's GET /_stats after the drain",
    "slo": "access log: the shop's ALB-format log evaluated by sagaway.observe.slo "
    "with the specification in slo.yaml",
    "gray_failure_alarm": "store and payment: sagaway.observe.alarms.GrayFailureSource, the "
    "checkout's charge_card tries (engine metrics in the store) against the payment "
    "provider's /health, evaluated live at every minute's end",
    "invariants": "each names its own source",
}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _latency(samples: list[Sample]) -> dict[str, Any]:
    answered = [s.latency for s in samples if s.status]
    ok = [s.latency for s in samples if 200 <= s.status < 400]
    return {
        "requests": len(samples),
        "ok": len(ok),
        "shed_503": sum(1 for s in samples if s.status == 503),
        "no_response": sum(1 for s in samples if s.status == 0),
        "p50_ms": _ms(percentile(answered, 50)) if answered else None,
        "p99_ms": _ms(percentile(answered, 99)) if answered else None,
        "ok_p99_ms": _ms(percentile(ok, 99)) if ok else None,
    }


def _lag(lags: list[float]) -> dict[str, Any]:
    return {
        "p99_ms": _ms(percentile(lags, 99)) if lags else None,
        "max_ms": _ms(max(lags)) if lags else None,
    }


def _per_second(samples: list[Sample], seconds: float) -> list[dict[str, Any]]:
    """Responses per second of the load: ok, shed and other, and the p99 of that second."""
    buckets: list[list[Sample]] = [[] for _ in range(int(seconds) + 1)]
    for s in samples:
        if 0 <= s.at < len(buckets):
            buckets[int(s.at)].append(s)
    out = []
    for second, group in enumerate(buckets):
        answered = [s.latency for s in group if s.status]
        out.append(
            {
                "t": second,
                "ok": sum(1 for s in group if 200 <= s.status < 400),
                "shed": sum(1 for s in group if s.status == 503),
                "other": sum(1 for s in group if not (200 <= s.status < 400 or s.status == 503)),
                "p99_ms": _ms(percentile(answered, 99)) if answered else None,
            }
        )
    return out


def _gray(run: SaleRun, phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Each evaluation with the phases its minute overlaps (the callers' tries are counted
    over the minute, the probe asked at its end, in the last of them)."""
    watch = run.gray
    period = float(GRAY_ALARM["period"])

    def overlapped(at: float) -> list[str]:
        end = at - run.started_at
        return [p["name"] for p in phases if p["start_s"] < end and p["end_s"] > end - period]

    return {
        "definition": GRAY_ALARM,
        "probe": None if watch is None else f"{watch.payment_url}/health",
        "error": None if watch is None else watch.error,
        "evaluations": [
            {"at": g.at, "state": g.state, "reason": g.reason, "phases": overlapped(g.at)}
            for g in ([] if watch is None else watch.states)
        ],
    }


def build_report(
    run: SaleRun, slo: SloOutcome, store: dict[str, Any], access_log: Path
) -> dict[str, Any]:
    """The whole report as JSON-ready data."""
    rec, audit = run.recorder, run.audit
    assert audit is not None
    options = run.options
    statuses: dict[str, int] = {}
    for s in rec.samples:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    routes = {r: _latency([s for s in rec.samples if s.route == r]) for r in ROUTES}
    phases = []
    for phase, began, ended, arrivals in run.phase_spans:
        mine = [s for s in rec.samples if s.phase == phase.name]
        phases.append(
            {
                "name": phase.name,
                "description": phase.description,
                "start_s": round(began, 1),
                "end_s": round(ended, 1),
                "target_rate": phase.rate,
                "arrivals": arrivals,
                "faults": {k: v["mode"] for k, v in phase.faults.items()},
                **_latency(mine),
                "generator_lag": _lag([lag for name, lag in rec.lags if name == phase.name]),
            }
        )
    pay = audit.provider_stats.get("payment", {})
    mail = audit.provider_stats.get("mail", {})
    inv = audit.provider_stats.get("inventory", {})
    source = slo.report.source
    return {
        "ok": audit.ok,
        "plan": options.plan.name,
        "seed": options.seed,
        "store": options.db_url.split(":", 1)[0],
        "workers": options.workers,
        "shedding": options.shedding,
        "started_at": run.started_at,
        "load_seconds": options.plan.load_seconds,
        "drain_seconds": round(audit.drained_in, 1),
        "sources": SOURCES,
        "invariants": [
            {
                "name": i.name,
                "value": i.value,
                "expected": i.expected,
                "must_be": i.must_be,
                "ok": i.ok,
                "source": i.source,
                "detail": i.detail,
            }
            for i in audit.invariants
        ],
        "requests": {
            "total": len(rec.samples),
            "by_status": dict(sorted(statuses.items())),
            "shed_503": statuses.get("503", 0),
            "shop_shed": audit.shop_stats.get("shed"),
            "access_log": {
                "path": str(access_log),
                "lines": source.lines,
                "parsed": source.parsed,
                "malformed": source.malformed,
            },
        },
        "latency": routes,
        "phases": phases,
        "per_second": _per_second(rec.samples, max((s.at for s in rec.samples), default=0)),
        "customers": {
            "arrivals": rec.arrivals,
            "completed": rec.completed,
            "gave_up": rec.gave_up,
            "turned_away_by_the_generator": rec.turned_away,
            "found_nothing_in_stock": rec.out_of_stock,
            "double_clicks": rec.double_clicks,
            "resubmissions": rec.resubmissions,
            "replayed_responses": rec.replayed,
            "still_walking_at_the_end": run.leftover_customers,
            "requests_queued_in_the_generator": sum(1 for q in rec.queued if q > 0.001),
            "generator_queue_p99_ms": _ms(percentile(rec.queued, 99)) if rec.queued else None,
        },
        "orders": {
            "total": len(audit.orders),
            "by_status": audit.order_statuses,
            "parked_and_resumed": store.get("parked_and_resumed", 0),
        },
        "store_runs": store,
        "providers": {
            "payment": {k: pay.get(k) for k in ("charges", "refunds")},
            "mail": {"sent": sum(mail.get("sent_per_order", {}).values())},
            "inventory": {k: inv.get(k) for k in ("initial", "available", "reserved", "sold")},
        },
        "shop": audit.shop_stats,
        "shop_samples": [{"t": round(t, 1), **s} for t, s in run.shop_samples],
        "events": [{"t": round(t, 1), "what": what} for t, what in run.events],
        "slo": slo.to_json(),
        "gray_failure_alarm": _gray(run, phases),
        "slo_table": report_table(slo.report),
    }


def write_report(report: dict[str, Any], out: Path) -> None:
    """`report.json` and `report.html` under `out`."""
    from sagaway.shop.sale._html import report_page

    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.html").write_text(report_page(report))


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def print_report(report: dict[str, Any], console: Console) -> None:
    """The report as tables in the terminal."""
    table = Table(title="latency per endpoint (customers)")
    for column in ("endpoint", "requests", "ok", "503 shed", "p50 ms", "p99 ms", "ok p99 ms"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for route, f in report["latency"].items():
        table.add_row(
            route,
            *(_cell(f[k]) for k in ("requests", "ok", "shed_503", "p50_ms", "p99_ms", "ok_p99_ms")),
        )
    console.print(table)
    phases = Table(title="phases (customers)")
    columns = ("phase", "arrivals", "requests", "503 shed", "p50 ms", "p99 ms", "lag p99", "faults")
    for column in columns:
        phases.add_column(column, justify="left" if column in ("phase", "faults") else "right")
    for p in report["phases"]:
        faults = ", ".join(f"{k} {v}" for k, v in p["faults"].items()) or "-"
        phases.add_row(
            p["name"],
            *(_cell(p[k]) for k in ("arrivals", "requests", "shed_503", "p50_ms", "p99_ms")),
            _cell(p["generator_lag"]["p99_ms"]),
            faults,
        )
    console.print(phases)
    orders = report["orders"]
    by_status = ", ".join(f"{k} {v:,}" for k, v in sorted(orders["by_status"].items()))
    console.print(
        f"orders (shop): {orders['total']:,} — {by_status or 'none'}; parked and resumed "
        f"(store): {orders['parked_and_resumed']:,}; requests {report['requests']['total']:,}, "
        f"503s shed {report['requests']['shed_503']:,}; drained in {report['drain_seconds']} s",
        highlight=False,
    )
    console.print(report["slo_table"], highlight=False, markup=False)
    for change in report["slo"]["alert_changes"]:
        what = "stopped (too few requests to judge)" if change["change"] == "quiet" else None
        console.print(
            f"alert {change['slo']} {change['severity']} {what or change['change']} at "
            f"{change['at'] - report['started_at']:.0f} s (burn rates {change['long_burn_rate']} / "
            f"{change['short_burn_rate']})",
            highlight=False,
        )
    gray = report["gray_failure_alarm"]
    for g in gray["evaluations"]:
        console.print(
            f"gray-failure alarm for the minute ending at {g['at'] - report['started_at']:.0f} s "
            f"(phases: {', '.join(g.get('phases', [])) or 'none'}): {g['state']}: {g['reason']}",
            highlight=False,
            markup=False,
        )
    if gray["error"]:
        console.print(f"gray-failure alarm could not be evaluated: {gray['error']}", markup=False)
    checks = Table(title="invariants")
    for column in ("", "invariant", "value", "must be", "source"):
        checks.add_column(column)
    for i in report["invariants"]:
        mark = "[green]ok[/green]" if i["ok"] else "[red]BROKEN[/red]"
        detail = f" ({i['detail']})" if i["detail"] else ""
        checks.add_row(mark, i["name"] + detail, _cell(i["value"]), i["must_be"], i["source"])
    console.print(checks)
    verdict = "every invariant holds" if report["ok"] else "an invariant is BROKEN"
    console.print(f"sale {report['plan']}: {verdict}; report.html and report.json written")
