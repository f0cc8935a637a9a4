"""The dashboard's operations pages: stuck work, breakers and quotas, messaging, SLOs (the
HTML report's burn-down and burn-rate charts), alarms and the audit log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from sagaway.api import _messaging as messages
from sagaway.api._html import badge, esc, run_link, short, table, when
from sagaway.api._state import ApiState
from sagaway.api._views import shared_states, stuck_work

__all__ = ["ops_pages"]

STUCK_TITLES = {
    "unowned": "Running without an owner past its lease",
    "parked": "Parked by a breaker, rate limit or bulkhead",
    "overdue": "Due, but no worker took it",
    "failed": "Failed: waiting for a person",
}


def _percent(fraction: Any) -> str:
    """A fraction of the report's JSON as a percentage for people."""
    if not isinstance(fraction, int | float):
        return "-"
    return f"{fraction * 100:.4g} %"


def _runs_table(runs: list[dict[str, Any]], base: str, empty: str) -> str:
    rows = [
        [
            run_link(base, r["id"]),
            esc(r["saga"]),
            f'<span class="mono">{esc(r["key"] or "-")}</span>',
            badge(r["status"]),
            when(r["updated_at"]),
            when(r["due_at"]),
        ]
        for r in runs
    ]
    headers = ["run", "saga", "key", "status", "updated (UTC)", "due (UTC)"]
    return table(headers, rows, empty, wide_only=frozenset({1, 4, 5}))


def ops_pages(state: ApiState, page: Callable[..., Any], html: Callable[..., Any]) -> APIRouter:
    """The operations pages, bound to `state`; `page` authenticates a viewer, `html` renders."""
    router = APIRouter(include_in_schema=False)
    store = state.store

    def base_of(request: Request) -> str:
        return request.scope.get("root_path", "")

    @router.get("/stuck")
    def stuck(request: Request) -> Response:
        who = page(request)
        base = base_of(request)
        found = stuck_work(store, state.settings.overdue_after)
        counts = "".join(
            f'<div class="stat"><b>{len(found[k])}{"+" if len(found[k]) >= 50 else ""}</b>'
            f"{esc(title)}</div>"
            for k, title in STUCK_TITLES.items()
        )
        body = f'<div class="grid">{counts}</div>'
        for kind, title in STUCK_TITLES.items():
            body += f"<h2>{esc(title)}</h2>" + _runs_table(found[kind], base, "None.")
            if kind == "parked" and found["parked_per_step"]:
                per = ", ".join(f"{esc(k)}: {v}" for k, v in found["parked_per_step"].items())
                body += f'<p class="kind">Parked per step: {per}</p>'
        return html("Stuck work", body, request, who, "stuck")

    @router.get("/breakers")
    def breakers(request: Request) -> Response:
        who = page(request)
        shared = shared_states(store, state.app)
        rows = [
            [
                esc(b["name"]),
                badge(b["state"] or "unknown"),
                when(b["until"]) if b["state"] not in (None, "closed") else "-",
                esc(", ".join(b["steps"]) or "-"),
            ]
            for b in shared["breakers"]
        ]
        body = "<h2>Circuit breakers</h2>" + table(
            ["breaker", "state", "until (UTC)", "steps"], rows,
            "No breaker has published a state (breakers shared with app.shared_breakers do).",
        )  # fmt: skip
        rows = [
            [
                esc(q["name"]),
                "full (never used)" if q["tokens"] is None else f"{q['tokens']:.2f}",
                when(q["stamp"]),
                esc(", ".join(q["steps"]) or "-"),
            ]
            for q in shared["rate_limits"]
        ]
        body += "<h2>Rate limits (quotas)</h2>" + table(
            ["limit", "tokens left", "as of (UTC)", "steps"], rows,
            "No shared rate limit has been used (limits with app.shared_rate_limits are).",
        )  # fmt: skip
        return html("Breakers and quotas", body, request, who, "breakers")

    @router.get("/messaging")
    def messaging(request: Request) -> Response:
        who = page(request)
        rows = [
            [esc(t["topic"]), str(t["messages"]), esc(", ".join(t["groups"])), when(t["oldest"])]
            for t in messages.topics(state.app)
        ]
        body = "<h2>Topics</h2>" + table(
            ["topic", "messages", "groups", "oldest (UTC)"], rows, "No topic yet."
        )
        rows = [
            [esc(g["group"]), esc(g["topic"]), str(g["ready"]), str(g["handled"]),
             str(g["dead"]), when(g["oldest_ready"])]
            for g in messages.groups(state.app)
        ]  # fmt: skip
        body += "<h2>Consumer groups</h2>" + table(
            ["group", "topic", "ready", "handled", "dead", "oldest waiting (UTC)"], rows,
            "No consumer group yet.",
        )  # fmt: skip
        rows = [
            [esc(d["group"]), esc(d["topic"]), f'<span class="mono">{esc(d["key"] or "-")}</span>',
             esc(d["fingerprint"]), str(d["attempts"]), when(d["failed_at"])]
            for d in messages.dead_letters(state.app, None, 200)
        ]  # fmt: skip
        body += "<h2>Dead letters</h2>" + table(
            ["group", "topic", "key", "error", "attempts", "failed (UTC)"], rows,
            "No dead letter.",
        )  # fmt: skip
        return html("Messaging", body, request, who, "messaging")

    @router.get("/slos")
    def slos(request: Request) -> Response:
        who = page(request)
        base = base_of(request)
        data = state.slos.as_json()
        if not data["slos"]:
            body = f'<p class="note">{esc(data["note"] or "no SLO in the specification")}</p>'
            return html("SLOs", body, request, who, "slos")
        rows = []
        for s in data["slos"]:
            budget = s.get("error_budget") or {}
            firing = [a["severity"] for a in s.get("alerts", []) if a.get("firing")]
            rates = " · ".join(
                f"{w} {r:.2f}" for w, r in (s.get("burn_rates") or {}).items() if r is not None
            )
            rows.append(
                [
                    esc(s.get("name")),
                    _percent(s.get("objective")),
                    _percent(s.get("sli")),
                    _percent(budget.get("remaining")),
                    esc(rates),
                    badge("failed") + " " + esc(", ".join(firing)) if firing else badge("ok"),
                ]
            )
        body = table(["SLO", "objective", "SLI", "budget left", "burn rates", "alerts"], rows, "")
        body += (
            "<h2>Burn-down and burn rates</h2>"
            f'<iframe class="report" title="SLO report" src="{base}/slos/report"></iframe>'
        )
        return html("SLOs", body, request, who, "slos")

    @router.get("/slos/report")
    def slo_report(request: Request) -> Response:
        page(request)
        text = state.slos.as_html()
        if text is None:
            return HTMLResponse(f"<p>{esc(state.slos.note())}</p>", status_code=404)
        return HTMLResponse(text)

    @router.get("/alarms")
    def alarms(request: Request) -> Response:
        who = page(request)
        data = state.alarms.as_json()
        rows = [
            [
                esc(a["name"]),
                badge(a["state"]),
                esc(a.get("reason") or ""),
                "<br>".join(
                    f"{esc(t['timestamp'])}: {esc(t['previous_state'])} → {esc(t['state'])}"
                    for t in a.get("transitions", [])[-8:]
                ),
            ]
            for a in data["items"]
        ]
        body = table(
            ["alarm", "state", "why", "incident timeline (UTC)"], rows, data["note"] or "No alarm."
        )
        return html("Alarms", body, request, who, "alarms")

    @router.get("/audit")
    def audit(request: Request) -> Response:
        who = page(request)
        base = base_of(request)
        before = request.query_params.get("before")
        records = store.audit(before=int(before) if before and before.isdigit() else None)
        rows = [
            [
                when(r.at),
                esc(r.actor),
                esc(r.action),
                f'<a class="mono" href="{base}/runs/{esc(r.run_id)}">{esc(r.run_id)}</a>'
                if r.run_id
                else "-",
                f'<span class="mono">{short(json.loads(r.detail), 160)}</span>',
                badge("ok")
                if r.outcome == "ok"
                else f'<span class="error">{esc(r.outcome)}</span>',
            ]
            for r in records
        ]
        body = table(
            ["at (UTC)", "who", "what", "run", "details", "outcome"], rows, "No change yet."
        )
        if len(records) == 100:
            body += f'<p><a class="button secondary" href="{base}/audit?before={records[-1].id}">Older</a></p>'
        return html("Audit log", body, request, who, "audit")

    return router
