"""The dashboard's run pages as HTML: the runs table, a run's step timeline and facts, and
the confirmation pages that say what an action will do before it is done."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sagaway.api._auth import Principal
from sagaway.api._html import badge, esc, hidden_csrf, run_link, short, table, when
from sagaway.api._operations import Operations
from sagaway.api._previews import fork_preview
from sagaway.api._views import find_page, run_detail, run_summary
from sagaway.api.access import Role
from sagaway.store.base import STATUSES, Store
from sagaway.store.browse import RunQuery
from sagaway.store.flow import FlowControl

__all__ = ["bulk_done", "bulk_page", "confirm_page", "run_page", "runs_page"]


def _waiting(run: dict[str, Any]) -> str:
    waiting = run.get("waiting")
    if waiting:
        if waiting["kind"] == "parked":
            return f"parked at {esc(waiting['step'])}"
        if waiting["kind"] == "signal":
            return f"waits for signal {esc(waiting['signal'])}"
        return "sleeping"
    error = run.get("error")
    if error:
        return short(f"{error.get('type', '').rsplit('.', 1)[-1]}: {error.get('message')}", 70)
    return ""


def runs_page(store: Store, query: RunQuery, cursor: str | None, base: str, who: Principal) -> str:
    """The runs table with its filters, search box and next-page link."""
    records, following = find_page(store, query, 50, cursor)
    chosen = set(query.statuses)
    options = "".join(
        f'<option value="{s}"{" selected" if s in chosen else ""}>{s}</option>' for s in STATUSES
    )
    filters = (
        f'<form class="filters card" method="get" action="{base}/runs">'
        f'<label>Search by key or run id<input name="q" value="{esc(query.search or "")}" '
        'placeholder="cart-42" autofocus></label>'
        f'<label>Status<select name="status"><option value="">any</option>{options}</select></label>'
        f'<label>Saga<input name="saga" value="{esc(query.saga or "")}"></label>'
        '<button type="submit">Find</button></form>'
    )
    rows = [
        [
            run_link(base, r.id),
            esc(r.saga),
            f'<span class="mono">{esc(r.key or "-")}</span>',
            badge(r.status),
            when(r.created_at),
            _waiting(run_summary(r)),
        ]
        for r in records
    ]
    listing = table(
        ["run", "saga", "key", "status", "created (UTC)", "waiting / error"],
        rows,
        "No run matches these filters.",
        wide_only=frozenset({1, 4, 5}),
    )
    params = [("status", s) for s in query.statuses]
    params += [(k, v) for k, v in (("saga", query.saga), ("q", query.search)) if v]
    more = ""
    if following:
        link = urlencode([*params, ("cursor", following)])
        more = f'<p><a class="button secondary" href="{base}/runs?{link}">Next page</a></p>'
    bulk = ""
    if who.may(Role.OPERATOR):
        bulk = (
            f'<p class="actions"><a class="button secondary" href="{base}/bulk/cancel?'
            f'{urlencode(params)}">Cancel all matching…</a><a class="button secondary" '
            f'href="{base}/bulk/redrive?{urlencode(params)}">Redrive all matching…</a></p>'
        )
    return filters + listing + more + bulk


def _facts(run: dict[str, Any], base: str) -> str:
    items = [
        ("status", badge(run["status"])),
        ("saga", esc(run["saga"])),
        ("key", f'<span class="mono">{esc(run["key"] or "-")}</span>'),
        ("created (UTC)", when(run["created_at"])),
        ("updated (UTC)", when(run["updated_at"])),
        ("owner", f'<span class="mono">{esc(run["owner"] or "-")}</span>'),
        ("input", f'<span class="mono">{short(run["input"], 300)}</span>'),
    ]
    if run["waiting"]:
        items.append(("waiting", _waiting(run)))
        deadline = run["waiting"].get("deadline")
        if deadline:
            items.append(("deadline (UTC)", when(deadline)))
    if run["result"] is not None:
        items.append(("result", f'<span class="mono">{short(run["result"], 300)}</span>'))
    error = run["error"]
    if error:
        where = f" at step {esc(error.get('step'))}" if error.get("step") else ""
        text = f"{esc(error.get('type'))}: {esc(error.get('message'))}{where}"
        items.append(
            ("error", f'<span class="s-failed badge">{esc(error.get("phase"))}</span> {text}')
        )
    if run["forked_from"]:
        origin = run["forked_from"]
        link = f'<a class="mono" href="{base}/runs/{esc(origin["run_id"])}">{esc(origin["run_id"])}</a>'
        items.append(("forked from", f"{link} at position {origin['from_step']}"))
    for fork in run["forks"]:
        link = f'<a class="mono" href="{base}/runs/{esc(fork["run_id"])}">{esc(fork["run_id"])}</a>'
        items.append(("fork", f"{link} from position {fork['from_step']}"))
    if run["recoveries"]:
        items.append(("taken over", f"{run['recoveries']} time(s) from dead workers"))
    if run["flow"]:
        items.append(("flow control", esc(FlowControl.from_doc(run["flow"]).describe())))
    facts = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in items)
    return f'<div class="card"><dl class="facts">{facts}</dl></div>'


def _timeline(run: dict[str, Any]) -> str:
    steps = run["steps"]
    if not steps:
        return '<p class="note">Nothing recorded yet: the run has not reached its first step.</p>'
    start = min(s["started_at"] for s in steps)
    span = max(max(s["finished_at"] for s in steps) - start, 1e-6)
    rows, compensating = [], False
    for s in steps:
        comp = s["phase"] == "compensation"
        if comp and not compensating:
            compensating = True
            rows.append(
                '<tr class="comp"><td colspan="7"><b>↩ compensation path</b> — what was undone, '
                "in the order it ran</td></tr>"
            )
        left = (s["started_at"] - start) / span * 100
        width = max((s["finished_at"] - s["started_at"]) / span * 100, 0.5)
        bar = f'<div class="bar"><span style="margin-left:{left:.1f}%;width:{width:.1f}%"></span></div>'
        what = (
            s["result"]
            if not s["error"]
            else f"{s['error'].get('type')}: {s['error'].get('message')}"
        )
        label = "undo " + esc(s["name"]) if comp else esc(s["name"])
        if s["kind"] == "wait":
            label = f"signal {esc(s['name'])}" + (
                " (timed out)" if s["status"] == "timeout" else ""
            )
        cls = "comp" if comp else ("fail" if s["status"] != "ok" else "")
        index = s.get("index")  # a fan-out's branch: the map's position and the item's index
        where = s["position"] if index is None else f"{s['position']}.{index}"
        rows.append(
            f'<tr class="{cls}"><td>{where}</td><td>{label}<div class="kind">{esc(s["kind"])}'
            f"</div></td><td>{badge(s['status'])}</td><td>{s['retries']}</td>"
            f'<td>{s["duration_ms"]:.1f} ms</td><td class="bar">{bar}</td>'
            f'<td class="mono">{short(what, 90)}</td></tr>'
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("pos", "step", "status", "retries", "took", "when", "result / error")
    )
    return (
        f'<div class="card scroll"><table class="timeline"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _events(run: dict[str, Any]) -> str:
    rows = [
        f'<tr class="ev-{esc(e["kind"])}"><td>{when(e["at"])}</td><td>{esc(e["kind"])}</td>'
        f'<td class="mono">{short(e["data"], 300)}</td></tr>'
        for e in run["events"]
    ]
    signals = "".join(
        f"<tr><td>{when(g['sent_at'])}</td><td>signal {esc(g['name'])} (not yet taken)</td>"
        f'<td class="mono">{short(g["payload"], 200)}</td></tr>'
        for g in run["pending_signals"]
    )
    if not rows and not signals:
        return ""
    return (
        '<h2>Events and signals</h2><div class="card scroll"><table><thead><tr><th>at (UTC)</th>'
        f"<th>what</th><th>details</th></tr></thead><tbody>{''.join(rows)}{signals}</tbody>"
        "</table></div>"
    )


def _buttons(run: dict[str, Any], base: str, who: Principal) -> str:
    if not who.may(Role.OPERATOR):
        return ""
    link = f"{base}/runs/{esc(run['id'])}/confirm"
    actions = run["actions"]
    buttons = []
    if actions["redrive"]["allowed"]:
        buttons.append(f'<a class="button" href="{link}/redrive">Redrive…</a>')
    if actions["cancel"]["allowed"]:
        buttons.append(f'<a class="button danger" href="{link}/cancel">Cancel…</a>')
    if actions["fork"]["allowed"] or run["status"] in ("succeeded", "compensated", "cancelled"):
        buttons.append(f'<a class="button secondary" href="{link}/fork">Fork…</a>')
    if run["status"] not in ("succeeded", "compensated", "cancelled"):
        buttons.append(f'<a class="button secondary" href="{link}/signal">Send signal…</a>')
    return f'<div class="actions">{"".join(buttons)}</div>' if buttons else ""


def run_page(
    store: Store, run_id: str, base: str, who: Principal, done: str | None, error: str | None
) -> str:
    """A run: facts, action buttons (operators), step timeline, events and signals."""
    run = run_detail(store, run_id)
    notes = ""
    if done:
        notes += f'<p class="done">{esc(done)}</p>'
    if error:
        notes += f'<p class="error">{esc(error)}</p>'
    return (
        notes + _facts(run, base) + _buttons(run, base, who) + "<h2>Step timeline</h2>"
        + _timeline(run) + _events(run)
    )  # fmt: skip


def _form(base: str, run_id: str, action: str, who: Principal, fields: str, label: str) -> str:
    danger = " danger" if action == "cancel" else ""
    return (
        f'<form method="post" action="{base}/runs/{esc(run_id)}/{action}">{hidden_csrf(who)}'
        f'{fields}<div class="actions"><button class="{danger.strip()}" type="submit">{label}'
        f'</button><a class="button secondary" href="{base}/runs/{esc(run_id)}">Back</a></div>'
        "</form>"
    )


def confirm_page(
    store: Store, run_id: str, action: str, from_step: int | None, base: str, who: Principal
) -> str:
    """What `action` will do to the run, and the form that does it."""
    run = run_detail(store, run_id)
    head = f'<p>Run <a class="mono" href="{base}/runs/{esc(run_id)}">{esc(run_id)}</a> of saga {esc(run["saga"])}, key <span class="mono">{esc(run["key"] or "-")}</span>, is {badge(run["status"])}.</p>'
    if action == "cancel":
        preview = run["actions"]["cancel"]
        if not preview["allowed"]:
            return head + f'<p class="error">It cannot be cancelled: {esc(preview["reason"])}.</p>'
        steps = preview["compensations"]
        listing = "".join(
            f"<li>undo <b>{esc(c['step'])}</b> (position {c['position']})</li>" for c in steps
        )
        what = (
            f"<p>Cancelling runs these compensations, newest first, then ends the run "
            f"<b>cancelled</b>:</p><ol>{listing}</ol>"
            if steps
            else "<p>No step with a compensation has completed: the run ends <b>cancelled</b> at once.</p>"
        )
        if preview["reason"]:
            what += f'<p class="note">{esc(preview["reason"])}</p>'
        what += '<p class="kind">A step running now finishes first; it is undone too if it has a compensation.</p>'
        return head + what + _form(base, run_id, "cancel", who, "", "Cancel the run")
    if action == "redrive":
        preview = run["actions"]["redrive"]
        if not preview["allowed"]:
            return head + f'<p class="error">It cannot be redriven: {esc(preview["reason"])}.</p>'
        if preview["resumes"] == "compensation":
            listing = "".join(
                f"<li>undo <b>{esc(c['step'])}</b> (position {c['position']})</li>"
                for c in preview["compensations"]
            )
            what = f"<p>Redriving resumes the unwinding where it gave up, at the compensation of <b>{esc(preview['step'])}</b>, and runs:</p><ol>{listing}</ol><p>When all succeed the run ends <b>compensated</b>.</p>"
        else:
            what = f"<p>Redriving runs step <b>{esc(preview['step'] or '?')}</b> (position {esc(preview['position'])}) again and continues the saga from there; earlier steps are not run again.</p>"
        return head + what + _form(base, run_id, "redrive", who, "", "Redrive the run")
    if action == "fork":
        record = store.get_run(run_id)
        assert record is not None  # run_detail found it
        preview = fork_preview(record, store.journal(run_id), from_step)
        options = "".join(
            f'<option value="{p}"{" selected" if p == preview["from_step"] else ""}>{p}</option>'
            for p in range(preview["positions"] + 1)
        )
        chooser = f'<form method="get" class="filters"><label>Run anew from position<select name="from_step">{options}</select></label><button class="secondary" type="submit">Preview</button></form>'
        reused = "".join(
            f"<li>{esc(r['kind'])} <b>{esc(r['name'])}</b> (position {r['position']})</li>"
            for r in preview["reused"]
        )
        what = f"<p>A new run of the same input reuses these recorded results without running them:</p><ol>{reused or '<li>nothing: the whole saga runs anew</li>'}</ol><p>Everything from position {preview['from_step']} on runs anew.</p>"
        if preview["compensated_in_origin"]:
            what += f'<p class="note">The origin compensated position(s) {", ".join(map(str, preview["compensated_in_origin"]))}: their effects were undone, but the fork reuses their results. Fork from an earlier position to run them again.</p>'
        if not preview["allowed"]:
            return head + chooser + f'<p class="error">{esc(preview["reason"])}</p>'
        fields = f'<input type="hidden" name="from_step" value="{preview["from_step"]}">'
        return head + chooser + what + _form(base, run_id, "fork", who, fields, "Fork the run")
    if action == "signal":
        waiting = run["waiting"]
        now = (
            f"<p>It waits for signal <b>{esc(waiting['signal'])}</b>: sending it resumes the run.</p>"
            if waiting and waiting.get("kind") == "signal"
            else "<p>It is not waiting for a signal now: a signal is kept until a wait of that name takes it.</p>"
        )
        name = waiting.get("signal", "") if waiting else ""
        fields = (
            f'<p><label>Signal<br><input name="name" required value="{esc(name)}"></label></p>'
            '<p><label>Payload (JSON)<br><textarea name="payload" rows="4" cols="40">{}</textarea></label></p>'
        )
        return head + now + _form(base, run_id, "signal", who, fields, "Send the signal")
    return f'<p class="error">No action {esc(action)}: cancel, redrive, fork or signal.</p>'


def bulk_page(
    state: Any, action: str, query: RunQuery, params: Any, base: str, who: Principal
) -> str:
    """How many runs a bulk action would change (a dry run), and the form that does it."""
    if action not in ("cancel", "redrive"):
        return f'<p class="error">No bulk action {esc(action)}: cancel or redrive.</p>'
    ops: Operations = state.operations
    result = ops.bulk(who, action, query, dry_run=True)
    target = ops.bulk_query(action, query)
    statuses = ", ".join(target.statuses) if target is not None else "none"
    sample = "".join(
        f'<li><a class="mono" href="{base}/runs/{esc(r)}">{esc(r)}</a></li>'
        for r in result.get("sample", [])
    )
    more = " (at most that many per request: repeat for more)" if result.get("more") else ""
    what = (
        f"<p>{'Cancelling' if action == 'cancel' else 'Redriving'} applies to runs that are {esc(statuses)}"
        f"{', saga ' + esc(query.saga) if query.saga else ''}{', key starting ' + esc(query.search) if query.search else ''}.</p>"
        f"<p><b>{result['matched']}</b> run(s) match{more}.</p><ul>{sample}</ul>"
    )
    if not result["matched"]:
        return what + f'<p><a class="button secondary" href="{base}/runs">Back</a></p>'
    hidden = "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
        for k, v in params.multi_items()
        if k in ("status", "saga", "q")
    )
    return what + (
        f'<form method="post" action="{base}/bulk/{action}">{hidden_csrf(who)}{hidden}'
        f'<div class="actions"><button class="danger" type="submit">{action.capitalize()} {result["matched"]} run(s)</button>'
        f'<a class="button secondary" href="{base}/runs">Back</a></div></form>'
    )


def bulk_done(result: dict[str, Any], base: str) -> str:
    """What a bulk action did."""
    done = "".join(
        f'<li><a class="mono" href="{base}/runs/{esc(r)}">{esc(r)}</a></li>' for r in result["done"]
    )
    refused = "".join(
        f'<li><span class="mono">{esc(r["run_id"])}</span>: {esc(r["reason"])}</li>'
        for r in result["refused"]
    )
    return (
        f'<p class="done">{len(result["done"])} run(s) changed.</p><ul>{done}</ul>'
        + (
            f'<p class="error">{len(result["refused"])} refused:</p><ul>{refused}</ul>'
            if refused
            else ""
        )
        + f'<p><a class="button secondary" href="{base}/runs">Back to runs</a></p>'
    )
