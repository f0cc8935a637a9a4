"""Checking and shaping what is published: a clear error at `publish` for bad input, before
anything is held for a write."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from sagaway import _clock
from sagaway._ids import time_ordered_id
from sagaway.errors import ConfigurationError, SerializationError
from sagaway.store.messages import NewMessage

__all__ = ["message_id", "new_message"]

_NAMESPACE = uuid.UUID("5a6a7761-7900-4000-8000-00000000006d")


def message_id(origin: str | None = None) -> str:
    """A message id: derived from `origin` (a run, a journal position and an index: the same
    after a replay) or, without one, new and time-ordered."""
    if origin is not None:
        return str(uuid.uuid5(_NAMESPACE, origin))
    return time_ordered_id()


def new_message(
    topic: str,
    payload: Any,
    *,
    key: str | None = None,
    delay: float | None = None,
    dedup_id: str | None = None,
    origin: str | None = None,
    now: float | None = None,
) -> NewMessage:
    """A message ready to store; raises ConfigurationError or SerializationError naming
    what is wrong with the call."""
    if not isinstance(topic, str) or not topic.strip() or topic != topic.strip():
        raise ConfigurationError(
            f"publish(topic={topic!r}): a topic is a non-empty string without surrounding "
            "spaces, e.g. 'orders.placed'"
        )
    for label, value in (("key", key), ("dedup_id", dedup_id)):
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(
                f"publish({topic!r}, {label}={value!r}): {label} must be a string or None "
                f"(e.g. str({value!r}))"
            )
    if delay is not None and (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not math.isfinite(delay)
        or delay < 0
    ):
        raise ConfigurationError(
            f"publish({topic!r}, delay={delay!r}): give the delay in seconds, 0 or more"
        )
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"the payload of a message to {topic!r} cannot be stored as JSON ({exc}): publish "
            "plain data — dict, list, str, int, float, bool, None"
        ) from None
    published = _clock.wall() if now is None else now
    return NewMessage(
        id=message_id(origin),
        topic=topic,
        key=key,
        payload=text,
        dedup_id=dedup_id,
        published_at=published,
        available_at=published + (delay or 0.0),
    )
