"""An OpenTelemetry tracer provider whose ended spans the tests read back from memory."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import wait_for


class Spans:
    """A tracer provider (`provider`, for `sagaway.otel.instrument`) keeping every span it
    ends; `tracer` makes the callers' spans."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def named(self, name: str) -> list:
        """The ended spans called `name`, in the order they ended."""
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def one(self, name: str):
        """The one ended span called `name` (fails if there are none or several)."""
        (span,) = self.named(name)
        return span

    def wait(self, name: str, count: int = 1) -> list:
        """The spans called `name` once at least `count` have ended."""
        return wait_for(
            lambda: len(self.named(name)) >= count and self.named(name), what=f"span {name!r}"
        )
