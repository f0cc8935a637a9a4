"""The dashboard's HTML: one layout and a few pieces, escaped by construction. Pages load
nothing but /static/app.css from this server."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from sagaway.api._auth import Principal

__all__ = ["badge", "esc", "hidden_csrf", "layout", "short", "table", "when"]

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


def badge(status: Any) -> str:
    """A status as a coloured badge."""
    return f'<span class="badge s-{esc(status)}">{esc(status)}</span>'


def hidden_csrf(who: Principal) -> str:
    """The form field every form of a session carries."""
    return f'<input type="hidden" name="csrf" value="{esc(who.csrf or "")}">'


def table(headers: list[str], rows: list[list[str]], empty: str, cls: str = "") -> str:
    """A table of already-escaped cells, or `empty` in a note."""
    if not rows:
        return f'<p class="note">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
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
