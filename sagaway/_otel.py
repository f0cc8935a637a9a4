"""The engine's tracing hooks made OpenTelemetry spans; imported only by `sagaway.otel`.

Names follow OpenTelemetry's conventions: `{operation} {target}` span names of low
cardinality (`run checkout`, `step charge`, `publish orders.placed`), the messaging semantic
conventions' attributes for messages, and sagaway's own under `sagaway.*`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from sagaway import __version__
from sagaway.engine._tracing import (
    AttemptTrace,
    HandlingTrace,
    RunTrace,
    Tracing,
    trace_headers,
    trace_text,
)
from sagaway.errors import MissingExtra
from sagaway.store.base import ErrorRecord, RunRecord, RunStatus
from sagaway.store.messages import Claimed, NewMessage

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:
    raise MissingExtra("otel", "Tracing with OpenTelemetry", exc) from None

__all__ = ["OtelTracing", "context_from_text", "context_text"]

_W3C = TraceContextTextMapPropagator()
# A run that ended one of these ways failed; its span's status is ERROR.
_FAILED = frozenset({RunStatus.COMPENSATED, RunStatus.FAILED})


def context_text(ctx: Context | None = None) -> str | None:
    """The W3C headers of `ctx` (default: the current context) as stored text (JSON), None
    when it holds no valid span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=ctx)
    return trace_text(carrier)


def context_from_text(text: str | None) -> Context | None:
    """The context stored as `text`; None when there is none (or it cannot be read: a trace
    is worth less than the run, so a damaged value starts a new trace)."""
    carrier = trace_headers(text)
    return _W3C.extract(carrier) if carrier else None


def _fail(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_attribute("error.type", f"{type(error).__module__}.{type(error).__qualname__}")
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class _SpanScope(HandlingTrace):
    """A span current in the thread between `__enter__` and `__exit__`, ended there."""

    def __init__(self, tracer: trace.Tracer, span: Span) -> None:
        self.tracer, self.span = tracer, span
        self.context = trace.set_span_in_context(span)
        self._token: object = None

    def __enter__(self) -> _SpanScope:
        self._token = otel_context.attach(self.context)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        if error is not None:
            _fail(self.span, error)
            self.span.set_attribute("sagaway.outcome", "error")
        else:
            self.span.set_attribute("sagaway.outcome", "ok")
        self.span.end()

    def stamp(self, messages: list[NewMessage]) -> tuple[NewMessage, ...]:
        return tuple(_stamped(self.tracer, self.context, messages))


def _stamped(
    tracer: trace.Tracer, parent: Context | None, messages: Sequence[NewMessage]
) -> list[NewMessage]:
    """Each message with the context of a `publish` span, a child of `parent` (or of the
    context the message carries already: one read from a broker continues its trace)."""
    stamped = []
    for message in messages:
        carried = context_from_text(message.trace_context)
        attributes: dict[str, Any] = {
            "messaging.system": "sagaway",
            "messaging.operation.name": "publish",
            "messaging.operation.type": "send",
            "messaging.destination.name": message.topic,
            "messaging.message.id": message.id,
        }
        if message.key is not None:
            attributes["sagaway.message.key"] = message.key
        span = tracer.start_span(
            f"publish {message.topic}",
            carried or parent,
            SpanKind.PRODUCER,
            attributes=attributes,
        )
        text = context_text(trace.set_span_in_context(span))
        span.end()
        stamped.append(dataclasses.replace(message, trace_context=text))
    return stamped


class _RunSpan(RunTrace):
    """A run's execution: its span, current in the execution's thread until `end`."""

    def __init__(self, tracer: trace.Tracer, run: RunRecord) -> None:
        self.tracer, self.run = tracer, run
        attributes: dict[str, Any] = {"sagaway.run.id": run.id, "sagaway.saga": run.saga}
        if run.key is not None:
            attributes["sagaway.run.key"] = run.key
        if run.parent_id is not None:
            attributes["sagaway.run.parent_id"] = run.parent_id
        if run.recoveries:
            attributes["sagaway.run.recoveries"] = run.recoveries
        self.span = tracer.start_span(
            f"run {run.saga}", context_from_text(run.trace_context), attributes=attributes
        )
        self.current = trace.set_span_in_context(self.span)
        self._token = otel_context.attach(self.current)

    def attempt(self, step: str, position: int, attempt: int, compensating: bool) -> AttemptTrace:
        attributes: dict[str, Any] = {
            "sagaway.run.id": self.run.id,
            "sagaway.saga": self.run.saga,
            "sagaway.step.name": step,
            "sagaway.step.position": position,
            "sagaway.step.attempt": attempt,
            "sagaway.step.compensation": compensating,
        }
        name = f"compensate {step}" if compensating else f"step {step}"
        span = self.tracer.start_span(name, self.current, attributes=attributes)
        return _SpanScope(self.tracer, span)

    def waited(
        self,
        kind: str,
        name: str,
        position: int,
        since: float,
        outcome: str,
        sender: str | None = None,
    ) -> None:
        sent = context_from_text(sender)
        link = trace.get_current_span(sent).get_span_context() if sent is not None else None
        attributes: dict[str, Any] = {
            "sagaway.run.id": self.run.id,
            "sagaway.saga": self.run.saga,
            "sagaway.step.position": position,
            "sagaway.outcome": outcome,
        }
        if kind == "wait":
            attributes["sagaway.signal.name"] = name
        end = time.time_ns()
        span = self.tracer.start_span(
            f"wait {name}" if kind == "wait" else "sleep",
            self.current,
            attributes=attributes,
            links=[Link(link)] if link is not None and link.is_valid else None,
            start_time=min(end, int(since * 1e9)),
        )
        if outcome == "timeout":
            span.set_attribute("error.type", "sagaway.errors.WaitTimeout")
            span.set_status(Status(StatusCode.ERROR, f"no signal {name!r} in time"))
        span.end(end)

    def stamp(self, messages: Sequence[NewMessage]) -> Sequence[NewMessage]:
        return _stamped(self.tracer, self.current, messages)

    def context(self) -> str | None:
        return context_text(self.current)

    def failed(self, error: BaseException) -> None:
        _fail(self.span, error)

    def end(self, outcome: str, error: str | None = None) -> None:
        otel_context.detach(self._token)
        self.span.set_attribute("sagaway.run.outcome", outcome)
        if outcome in _FAILED:
            record = ErrorRecord.from_json(error)
            if record is not None:
                self.span.set_attribute("error.type", record.type)
            self.span.set_status(Status(StatusCode.ERROR, f"the run ended {outcome}"))
        self.span.end()


class OtelTracing(Tracing):
    """Tracing through an OpenTelemetry tracer provider (None: the global one)."""

    enabled = True

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("sagaway", __version__, tracer_provider)

    def capture(self) -> str | None:
        return context_text()

    def run(self, run: RunRecord) -> RunTrace:
        return _RunSpan(self.tracer, run)

    def publish(self, messages: Sequence[NewMessage]) -> Sequence[NewMessage]:
        return _stamped(self.tracer, None, messages)

    def handling(self, claimed: Claimed) -> HandlingTrace:
        message = claimed.message
        attributes: dict[str, Any] = {
            "messaging.system": "sagaway",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": message.topic,
            "messaging.consumer.group.name": claimed.group,
            "messaging.message.id": message.id,
            "sagaway.message.attempt": claimed.attempt,
        }
        if message.key is not None:
            attributes["sagaway.message.key"] = message.key
        span = self.tracer.start_span(
            f"process {message.topic}",
            context_from_text(message.trace_context),
            SpanKind.CONSUMER,
            attributes=attributes,
        )
        return _SpanScope(self.tracer, span)
