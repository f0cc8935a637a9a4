"""The dashboard's HTML: one layout and a few pieces, escaped by construction. Pages load
nothing but /static/app.css from this server."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from sagaway.api._auth import Principal

__all__ = ["badge", "esc", "hidden_csrf", "layout", "run_link", "short", "table", "when"]

NAV = (
    ("runs", "/runs", "Runs"),
    ("stuck", "/stuck", "Stuck work"),
    ("breakers", "/breakers", "Breakers & quotas"),
    ("messaging", "/messaging", "Messaging"),
    ("slos", "/slos", "SLOs"),
    ("alarms", "/alarms", "Alarms"),
    ("audit", "/audit", "Audit"),
)


def esc(value: Any) -> str:
    """Text made safe for HTML (attributes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def when(ts: float | None) -> str:
    """A UTC time for people, in a <time> element."""
    if ts is None:
        return "-"
    moment = datetime.fromtimestamp(ts, UTC)
    shown = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f'<time datetime="{moment.isoformat()}">{shown}</time>'


def short(value: Any, width: int = 80) -> str:
    """A JSON value on one line, cut to `width` characters, escaped."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return esc(text if len(text) <= width else text[: width - 1] + "…")


def run_link(base: str, run_id: str) -> str:
    """A link to a run, its id shortened to the end that tells runs apart (the start of a
    time-ordered id is the same for runs started together); the whole id is its title."""
    shown = run_id if len(run_id) <= 14 else "…" + run_id[-12:]
    return (
        f'<a class="mono nowrap" href="{base}/runs/{esc(run_id)}" title="{esc(run_id)}">'
        f"{esc(shown)}</a>"
    )


def badge(status: Any) -> str:
    """A status as a coloured badge."""
    return f'<span class="badge s-{esc(status)}">{esc(status)}</span>'


def hidden_csrf(who: Principal) -> str:
    """The form field every form of a session carries."""
    return f'<input type="hidden" name="csrf" value="{esc(who.csrf or "")}">'


def table(
    headers: list[str],
    rows: list[list[str]],
    empty: str,
    cls: str = "",
    wide_only: frozenset[int] = frozenset(),
) -> str:
    """A table of already-escaped cells, or `empty` in a note; the columns at the indexes in
    `wide_only` are left out on a phone's width."""

    def attr(i: int) -> str:
        return ' class="hide-narrow"' if i in wide_only else ""

    if not rows:
        return f'<p class="note">{esc(empty)}</p>'
    head = "".join(f"<th{attr(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{attr(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def layout(
    title: str, body: str, *, base: str, active: str = "", who: Principal | None = None
) -> str:
    """A whole page: header with navigation and who is signed in, then `body`."""
    nav = "".join(
        f'<a href="{base}{path}" class="{"active" if key == active else ""}">{label}</a>'
        for key, path, label in NAV
    )
    account = ""
    if who is not None:
        account = (
            f'<span class="who"><span>{esc(who.token.name)} · {esc(who.role)}</span>'
            f'<form class="inline" method="post" action="{base}/logout">{hidden_csrf(who)}'
            '<button class="secondary" type="submit">Sign out</button></form></span>'
        )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · sagaway</title>"
        f'<link rel="stylesheet" href="{base}/static/app.css">'
        f'<link rel="icon" href="data:,"></head><body><header>'
        f'<a class="brand" href="{base}/runs">sagaway</a><nav>{nav if who else ""}</nav>'
        f"{account}</header><main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )
