"""OpenTelemetry traces of an App's runs and messages (the `otel` extra).

`instrument(app)` makes the App trace: one span per execution of a run (a child of the code
that started it, in whatever process executes it), one per try of a step or compensation,
one per durable wait or timer it resumes from, one per message published and one per try
of a consumer's handler (a child of its publisher). Trace contexts (W3C `traceparent` and
`tracestate`) are stored with runs, signals and messages, so one order is one trace across
processes. See docs/tracing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagaway.engine.app import App

__all__ = ["instrument"]


def instrument(app: App, tracer_provider: Any = None) -> None:
    """Trace `app`'s runs and messages with OpenTelemetry, through `tracer_provider` (an
    `opentelemetry.trace.TracerProvider`; default: the global one, as set by
    `opentelemetry.trace.set_tracer_provider` now or later).

    Call it before the App's workers start (`app.launch()`, `with app:`), in every process
    that starts, signals or executes runs or publishes and consumes messages: each process
    records its own spans, the stored trace contexts join them. Raises MissingExtra when
    OpenTelemetry is not installed, ConfigurationError when the App's workers already run.
    """
    from sagaway._otel import OtelTracing  # raises MissingExtra without OpenTelemetry

    app.tracing = OtelTracing(tracer_provider)
