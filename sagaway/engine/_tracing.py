"""The engine's tracing hooks, and the ones it uses when tracing is off: they do nothing.

The engine calls these at a run's execution, each step or compensation try, each wait or
timer it resumes from, each message published or handled; `sagaway.otel` implements them
with OpenTelemetry. Trace contexts travel as text (JSON of the W3C `traceparent` and
`tracestate` headers), stored with runs, signals and messages. Off, each hook is a call that
returns a shared object: no clock reading, no allocation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagaway.store.base import RunRecord
    from sagaway.store.messages import Claimed, NewMessage

__all__ = [
    "NO_TRACING",
    "TRACE_HEADERS",
    "AttemptTrace",
    "HandlingTrace",
    "RunTrace",
    "Tracing",
    "trace_headers",
    "trace_text",
]

# The W3C Trace Context headers a message's trace context is made of.
TRACE_HEADERS = ("traceparent", "tracestate")


def trace_headers(text: str | None) -> dict[str, str]:
    """A stored trace context as its W3C headers; empty when there is none."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {name: str(doc[name]) for name in TRACE_HEADERS if doc.get(name)}


def trace_text(headers: Mapping[str, Any] | None) -> str | None:
    """The W3C headers among `headers` (names in any case, values text or bytes) as a
    stored trace context; None without a `traceparent`."""
    found: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if isinstance(name, str) and name.lower() in TRACE_HEADERS and value is not None:
            raw = bytes(value) if isinstance(value, bytes | bytearray) else None
            found[name.lower()] = raw.decode("utf-8", "replace") if raw is not None else str(value)
    if "traceparent" not in found:
        return None
    return json.dumps(found, sort_keys=True, separators=(",", ":"))


class AttemptTrace:
    """One try of a step or compensation body, current in the body's thread while it runs
    (`with`); the exception that leaves the block, if any, fails it."""

    def __enter__(self) -> AttemptTrace:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> None:
        return None

    def stamp(self, messages: list[NewMessage]) -> tuple[NewMessage, ...]:
        """The messages this try published, each carrying the trace context of its publish."""
        return tuple(messages)


class HandlingTrace(AttemptTrace):
    """One try of a consumer's handler, a child of the message's publisher."""


class RunTrace:
    """One execution of a run in this process: from its claim to its end or rest."""

    def attempt(self, step: str, position: int, attempt: int, compensating: bool) -> AttemptTrace:
        """A try of `step`'s body (or its compensation) at journal `position`."""
        return _NO_ATTEMPT

    def waited(
        self,
        kind: str,
        name: str,
        position: int,
        since: float,
        outcome: str,
        sender: str | None = None,
    ) -> None:
        """A durable wait (`kind` "wait", for signal `name`) or timer ("sleep") that began at
        `since` (store clock) ended now with `outcome`; `sender`: the signal's trace context."""

    def stamp(self, messages: Sequence[NewMessage]) -> Sequence[NewMessage]:
        """Messages published by the saga function itself (`ctx.publish`)."""
        return messages

    def context(self) -> str | None:
        """This execution's trace context, for the child runs it starts."""
        return None

    def failed(self, error: BaseException) -> None:
        """The saga failed with `error` (it compensates or fails)."""

    def end(self, outcome: str, error: str | None = None) -> None:
        """The execution is over: the run ended (`outcome` is its status, `error` its
        recorded error), rests ("suspended") or was handed back ("released")."""


class Tracing:
    """An App's tracer; this base traces nothing."""

    enabled = False

    def capture(self) -> str | None:
        """The caller's current trace context as stored text, None when there is none."""
        return None

    def run(self, run: RunRecord) -> RunTrace:
        """Begin an execution of `run`, joined to the trace its starter was in; current in
        the calling thread until its `end`."""
        return _NO_RUN

    def publish(self, messages: Sequence[NewMessage]) -> Sequence[NewMessage]:
        """Messages published outside a saga (`app.publish`), in the caller's context."""
        return messages

    def handling(self, claimed: Claimed) -> HandlingTrace:
        """A try of a consumer's handler of `claimed`."""
        return _NO_HANDLING


_NO_ATTEMPT = AttemptTrace()
_NO_HANDLING = HandlingTrace()
_NO_RUN = RunTrace()
NO_TRACING = Tracing()
