"""A traced App for tests that execute runs in worker processes: every span it ends is
appended to $SAGAWAY_TEST_SPANS as a JSON line (name, ids, parent, links, attributes).
`place` publishes a message and hangs while `<spans>.hang` exists; `mailer` handles it."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from sagaway import App, Retry, current_step
from sagaway.otel import instrument


class JsonLinesExporter(SpanExporter):
    """Appends each span to a file at once, so a process killed later has written it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            assert span.context is not None
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "trace_id": f"{span.context.trace_id:032x}",
                        "span_id": f"{span.context.span_id:016x}",
                        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                        "links": [f"{link.context.span_id:016x}" for link in span.links],
                        "attributes": dict(span.attributes or {}),
                        "pid": os.getpid(),
                    }
                )
            )
        with self.lock, open(self.path, "a") as f:
            f.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


def build(url: str | None, spans: str, lease: float = 2.0) -> App:
    """The App on `url` (None: $SAGAWAY_DB), its spans going to the file `spans`."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(spans)))
    app = App(url, lease=lease, retry=Retry(attempts=3, base=0.01, cap=0.05))
    instrument(app, provider)

    @app.step
    def place(order: str) -> str:
        current_step().publish("orders.placed", {"order": order}, key=order)
        while os.path.exists(f"{spans}.hang"):
            time.sleep(0.01)
        return order

    @app.saga()
    def checkout(ctx, order: str) -> str:
        return place(order)

    @app.consumer("orders.placed", group="mailer")
    def send_mail(message) -> None:
        pass

    return app


# What `sagaway worker tests.apps.traced:app` runs (the store opens on first use).
app = build(
    None,
    os.environ.get("SAGAWAY_TEST_SPANS", "spans.jsonl"),
    float(os.environ.get("SAGAWAY_TEST_LEASE", "2")),
)
