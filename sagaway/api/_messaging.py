"""The messaging views: topics, consumer groups and dead letters (with the triage
fingerprint), and the redrive of dead letters, audited."""

from __future__ import annotations

from typing import Any

from sagaway.api._auth import Principal
from sagaway.api.access import actor_name, audit
from sagaway.engine.app import App
from sagaway.errors import SagawayError

__all__ = ["dead_letters", "groups", "redrive_dead_letters", "topics"]


def topics(app: App) -> list[dict[str, Any]]:
    """Every topic with its retained messages and groups."""
    return [
        {"topic": t.topic, "messages": t.messages, "groups": list(t.groups), "oldest": t.oldest}
        for t in app.store.topics()
    ]


def groups(app: App) -> list[dict[str, Any]]:
    """Every consumer group with its ready, handled and dead counts and its lag."""
    return [
        {
            "group": g.group,
            "topic": g.topic,
            "ready": g.ready,
            "handled": g.handled,
            "dead": g.dead,
            "oldest_ready": g.oldest_ready,
        }
        for g in app.store.groups()
    ]


def dead_letters(app: App, group: str | None, limit: int) -> list[dict[str, Any]]:
    """Dead letters, with the message, the last error and the fingerprint that groups those
    that failed the same way."""
    return [
        {
            "id": d.id,
            "group": d.group,
            "topic": d.message.topic,
            "key": d.message.key,
            "payload": d.message.payload,
            "published_at": d.message.published_at,
            "error": None
            if d.error is None
            else {"type": d.error.type, "message": d.error.message},
            "fingerprint": d.fingerprint,
            "attempts": d.attempts,
            "failed_at": d.failed_at,
        }
        for d in app.dead_letters(group=group, limit=limit)
    ]


def redrive_dead_letters(app: App, who: Principal, group: str, ids: list[str] | None) -> int:
    """Move dead letters of `group` (all, or those in `ids`) back for another try; audited."""
    detail: dict[str, Any] = {"group": group, "ids": ids}
    actor = actor_name(who.token)
    try:
        moved = app.redrive_dead_letters(group, ids)
    except SagawayError as exc:
        audit(app.store, actor, "dead_letters.redrive", None, detail, f"refused: {exc}")
        raise
    audit(app.store, actor, "dead_letters.redrive", None, {**detail, "moved": moved})
    return moved
