"""What a consumer receives (`Message`) and what a dead-letter queue holds (`DeadLetter`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sagaway.engine._tracing import trace_headers
from sagaway.store.base import ErrorRecord
from sagaway.store.messages import MessageRecord

__all__ = ["DeadLetter", "Message", "fingerprint"]


@dataclass(frozen=True)
class Message:
    """One message as a consumer group's handler receives it.

    `attempt` starts at 1 and counts this group's tries of this message. `idempotency_key`
    is stable per (group, message): pass it to the services the handler calls so that
    their effects happen once even when the message is handed over again. `trace_headers`
    holds the publisher's W3C trace context (`traceparent`, `tracestate`) when it was
    traced, else nothing.
    """

    id: str
    topic: str
    key: str | None
    payload: Any
    attempt: int
    published_at: float
    group: str
    trace_headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        """`<group>/<message id>`: the same on every delivery of this message to the group."""
        return f"{self.group}/{self.id}"

    @classmethod
    def from_record(cls, record: MessageRecord, group: str, attempt: int) -> Message:
        """The message as stored, its payload decoded."""
        return cls(
            id=record.id,
            topic=record.topic,
            key=record.key,
            payload=json.loads(record.payload),
            attempt=attempt,
            published_at=record.published_at,
            group=group,
            trace_headers=trace_headers(record.trace_context),
        )


@dataclass(frozen=True)
class DeadLetter:
    """A message whose retries were spent in `group`: its last `error`, how many `attempts`
    it had, and when it `failed_at`. `id` is the message's id (redrive by it)."""

    id: str
    group: str
    message: Message
    error: ErrorRecord | None
    attempts: int
    failed_at: float

    @property
    def fingerprint(self) -> str:
        """The error's class and message with numbers and ids blanked: dead letters that
        failed the same way share it (the triage view groups by it)."""
        return fingerprint(self.error)


_VARYING = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27,}|0x[0-9a-f]+|\d+(\.\d+)?", re.IGNORECASE)


def fingerprint(error: ErrorRecord | None) -> str:
    """`Type: message` with UUIDs, hex and decimal numbers replaced by `#`."""
    if error is None:
        return "(no error recorded)"
    name = error.type.rsplit(".", 1)[-1]
    return f"{name}: {_VARYING.sub('#', error.message)}"[:200]
