"""OpenTelemetry traces (`sagaway.otel`): the spans of runs, tries, compensations, waits and
messages, and the trace context carried through start, signals, messages and processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from sagaway import Permanent, Retry, SagaCompensated, WaitTimeout, current_step
from sagaway.errors import ConfigurationError
from sagaway.otel import instrument
from tests.conftest import wait_for, wait_status
from tests.processes import WorkerProcess
from tests.tracing import Spans

ONCE = Retry(attempts=1)


@pytest.fixture
def spans() -> Spans:
    return Spans()


def test_a_run_with_a_retry_and_a_compensation_is_one_span_tree_in_the_callers_trace(
    make_app, spans
):
    app = make_app()
    instrument(app, spans.provider)
    tries = []

    @app.step
    def reserve(order: str) -> str:
        return "hold-1"

    @reserve.compensation
    def release(order: str, result=None) -> None:
        pass

    @app.step(retry=Retry(attempts=3, base=0.001, cap=0.002))
    def charge(order: str) -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("payment provider timed out")
        return "ch-1"

    @charge.compensation
    def refund(order: str, result=None) -> None:
        pass

    @app.step(retry=ONCE)
    def ship(order: str) -> None:
        raise Permanent(ValueError("no courier for this address"))

    @app.saga()
    def checkout(ctx, order: str) -> None:
        reserve(order)
        charge(order)
        ship(order)

    with app:
        with spans.tracer.start_as_current_span("POST /checkout") as caller:
            run = app.start(checkout, "o-1", key="o-1")
        with pytest.raises(SagaCompensated):
            run.result(timeout=30)

    root = caller.get_span_context()
    run_span = spans.one("run checkout")
    assert run_span.context.trace_id == root.trace_id
    assert run_span.parent.span_id == root.span_id
    assert run_span.attributes["sagaway.run.id"] == run.id
    assert run_span.attributes["sagaway.run.key"] == "o-1"
    assert run_span.attributes["sagaway.run.outcome"] == "compensated"
    assert run_span.status.status_code == StatusCode.ERROR
    assert run_span.attributes["error.type"] == "builtins.ValueError"
    assert [e.name for e in run_span.events] == ["exception"]

    first, second = sorted(spans.named("step charge"), key=lambda s: s.start_time)
    assert (
        first.attributes["sagaway.step.attempt"],
        second.attributes["sagaway.step.attempt"],
    ) == (
        1,
        2,
    )
    assert first.status.status_code == StatusCode.ERROR
    assert first.attributes["error.type"] == "builtins.ConnectionError"
    assert first.events[0].attributes["exception.message"] == "payment provider timed out"
    assert second.status.status_code == StatusCode.UNSET
    assert second.attributes["sagaway.outcome"] == "ok"
    assert spans.one("step ship").status.status_code == StatusCode.ERROR

    undo = sorted(
        spans.named("compensate charge") + spans.named("compensate reserve"),
        key=lambda s: s.start_time,
    )
    assert [s.name for s in undo] == ["compensate charge", "compensate reserve"]
    assert undo[0].attributes["sagaway.step.compensation"] is True
    children = [*spans.named("step reserve"), first, second, spans.one("step ship"), *undo]
    for span in children:
        assert span.context.trace_id == root.trace_id
        assert span.parent.span_id == run_span.context.span_id
        assert span.attributes["sagaway.run.id"] == run.id
    assert [s.attributes["sagaway.step.position"] for s in undo] == [1, 0]


def test_a_message_published_in_a_step_is_handled_in_the_trace_of_the_run_that_published_it(
    make_app, spans
):
    app = make_app()
    instrument(app, spans.provider)

    @app.step
    def place(order: str) -> str:
        current_step().publish("orders.placed", {"order": order}, key=order)
        return order

    @app.saga()
    def checkout(ctx, order: str) -> str:
        return place(order)

    @app.saga()
    def fulfil(ctx, order: str) -> str:
        return order

    @app.consumer("orders.placed", group="fulfilment")
    def on_placed(message) -> None:
        app.start(fulfil, message.payload["order"], key=message.id)  # in the handler's span

    with app:
        with spans.tracer.start_as_current_span("POST /checkout") as caller:
            app.start(checkout, "o-7").result(timeout=30)
        (fulfil_run,) = spans.wait("run fulfil")

    trace_id = caller.get_span_context().trace_id
    step = spans.one("step place")
    publish = spans.one("publish orders.placed")
    process = spans.one("process orders.placed")
    assert publish.parent.span_id == step.context.span_id
    assert publish.kind == trace.SpanKind.PRODUCER
    assert process.parent.span_id == publish.context.span_id
    assert process.kind == trace.SpanKind.CONSUMER
    assert process.attributes["messaging.consumer.group.name"] == "fulfilment"
    assert process.attributes["messaging.message.id"] == publish.attributes["messaging.message.id"]
    assert fulfil_run.parent.span_id == process.context.span_id
    for span in (step, publish, process, fulfil_run):
        assert span.context.trace_id == trace_id


def test_a_signal_links_the_wait_to_its_sender_and_the_run_stays_in_its_starters_trace(
    make_app, spans
):
    app = make_app()
    instrument(app, spans.provider)

    @app.saga()
    def checkout(ctx, order: str) -> dict:
        return ctx.wait("confirmed", timeout=60)

    with app:
        with spans.tracer.start_as_current_span("POST /checkout") as starter:
            run = app.start(checkout, "o-3")
        wait_status(run, "waiting")
        suspended = spans.wait("run checkout")[0]
        with spans.tracer.start_as_current_span("POST /confirm") as sender:
            app.signal(run.id, "confirmed", {"ok": True})
        assert run.result(timeout=30) == {"ok": True}

    first, resumed = sorted(spans.named("run checkout"), key=lambda s: s.start_time)
    assert first is suspended and first.attributes["sagaway.run.outcome"] == "suspended"
    assert resumed.attributes["sagaway.run.outcome"] == "succeeded"
    for span in (first, resumed):
        assert span.context.trace_id == starter.get_span_context().trace_id
        assert span.parent.span_id == starter.get_span_context().span_id
    wait = spans.one("wait confirmed")
    assert wait.parent.span_id == resumed.context.span_id
    assert [link.context.span_id for link in wait.links] == [sender.get_span_context().span_id]
    assert wait.attributes["sagaway.outcome"] == "signalled"
    # The wait began when the run reached it, before it rested, and ended when resumed.
    assert wait.start_time <= first.end_time and wait.end_time >= sender.end_time


def test_a_timer_is_one_span_when_it_elapses_and_a_wait_that_times_out_is_an_error(make_app, spans):
    app = make_app()
    instrument(app, spans.provider)

    @app.saga()
    def reminder(ctx, order: str) -> str:
        ctx.sleep(1.2)  # longer than a worker waits in its thread: the run rests
        try:
            return ctx.wait("paid", timeout=0.3)
        except WaitTimeout:
            return "reminded"

    with app:
        run = app.start(reminder, "o-4")
        assert run.result(timeout=30) == "reminded"

    runs = sorted(spans.named("run reminder"), key=lambda s: s.start_time)
    assert [s.attributes["sagaway.run.outcome"] for s in runs] == [
        "suspended",
        "suspended",
        "succeeded",
    ]
    (sleep,) = spans.named("sleep")  # the last execution replays past it: no second span
    assert sleep.parent.span_id == runs[1].context.span_id
    assert sleep.attributes["sagaway.outcome"] == "elapsed"
    assert sleep.end_time - sleep.start_time >= 1.2e9
    wait = spans.one("wait paid")
    assert wait.parent.span_id == runs[2].context.span_id
    assert wait.status.status_code == StatusCode.ERROR
    assert wait.attributes["sagaway.outcome"] == "timeout"
    assert wait.end_time - wait.start_time >= 0.3e9


def test_a_child_run_and_an_async_steps_body_join_the_parents_trace(make_app, spans):
    app = make_app()
    instrument(app, spans.provider)
    seen = {}

    @app.step
    async def lookup(order: str) -> str:
        seen["span"] = trace.get_current_span().get_span_context().span_id
        return order

    @app.saga()
    def invoice(ctx, order: str) -> str:
        return lookup(order)

    @app.saga()
    def checkout(ctx, order: str) -> str:
        return ctx.child(invoice, order)

    with app:
        with spans.tracer.start_as_current_span("POST /checkout") as caller:
            run = app.start(checkout, "o-9")
        assert run.result(timeout=30) == "o-9"

    parent_runs = spans.named("run checkout")
    child_run = spans.one("run invoice")
    assert child_run.parent.span_id in {s.context.span_id for s in parent_runs}
    assert child_run.context.trace_id == caller.get_span_context().trace_id
    assert seen["span"] == spans.one("step lookup").context.span_id


def test_without_instrument_nothing_is_traced_and_no_context_is_stored(make_app, spans):
    app = make_app()

    @app.step
    def place(order: str) -> str:
        current_step().publish("orders.placed", {"order": order})
        return order

    @app.saga()
    def checkout(ctx, order: str) -> str:
        ctx.wait("go", timeout=60)
        return place(order)

    with app:
        with spans.tracer.start_as_current_span("POST /checkout"):
            run = app.start(checkout, "o-5")
            app.signal(run.id, "go")
        run.result(timeout=30)
    assert [s.name for s in spans.exporter.get_finished_spans()] == ["POST /checkout"]
    assert app.tracing.enabled is False
    assert app.store.get_run(run.id).trace_context is None
    assert [s.trace_context for s in app.store.pending_signals(run.id)] == []
    now = app.store.now()
    app.store.register_group("probe", "orders.placed", now)  # takes the retained message
    (claimed,) = app.store.claim_messages("probe", "me", 10, now, now + 10, False)
    assert claimed.message.trace_context is None


def test_tracing_is_set_before_the_workers_start(make_app, spans):
    app = make_app()
    with app, pytest.raises(ConfigurationError, match=r"before app.launch\(\)"):
        instrument(app, spans.provider)


def test_a_worker_process_joins_the_starters_trace_even_after_recovering_the_run(tmp_path, spans):
    url = f"sqlite:///{tmp_path}/traced.db"
    file = tmp_path / "spans.jsonl"
    from tests.apps.traced import build

    starter = build(url, str(tmp_path / "starter.jsonl"))
    instrument(starter, spans.provider)
    (tmp_path / "spans.jsonl.hang").touch()
    env = {"SAGAWAY_TEST_SPANS": str(file)}
    first = WorkerProcess(
        url, tmp_path / "log", lease=2.0, target="tests.apps.traced:app", env_extra=env
    )
    try:
        with spans.tracer.start_as_current_span("POST /checkout") as caller:
            run = starter.start("checkout", "o-11")
        wait_for(lambda: starter.store.get_run(run.id).owner, what="the worker's claim")
        first.kill()  # mid-step: it never ended its spans
        (tmp_path / "spans.jsonl.hang").unlink()
        second = WorkerProcess(
            url, tmp_path / "log", lease=2.0, target="tests.apps.traced:app", env_extra=env
        )
        try:
            assert starter.get(run.id).result(timeout=60) == "o-11"
            lines = wait_for(
                lambda: (
                    [json.loads(line) for line in file.read_text().splitlines()]
                    if file.exists() and "process orders.placed" in file.read_text()
                    else None
                ),
                timeout=30,
                what="the consumer's span",
            )
        finally:
            second.stop()
    finally:
        first.stop()
        starter.close()
    by_name = {span["name"]: span for span in lines}
    context = caller.get_span_context()
    run_span = by_name["run checkout"]
    assert run_span["pid"] == second.process.pid
    assert run_span["trace_id"] == f"{context.trace_id:032x}"
    assert run_span["parent_id"] == f"{context.span_id:016x}"
    assert run_span["attributes"]["sagaway.run.recoveries"] == 1
    assert by_name["process orders.placed"]["trace_id"] == run_span["trace_id"]
    assert (
        by_name["process orders.placed"]["parent_id"] == by_name["publish orders.placed"]["span_id"]
    )


def test_without_the_extra_sagaway_runs_and_instrument_names_the_extra(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        from sagaway import App, current_step
        from sagaway.errors import MissingExtra
        app = App("sqlite:///{tmp_path}/bare.db")
        handled = []

        @app.step
        def place(order):
            current_step().publish("orders.placed", {{"order": order}})
            return order

        @app.saga()
        def checkout(ctx, order):
            ctx.wait("go", timeout=60)
            return place(order)

        @app.consumer("orders.placed", group="mailer")
        def mail(message):
            handled.append(message.payload["order"])

        with app:
            run = app.start(checkout, "o-1")
            app.signal(run.id, "go")
            print(run.result(timeout=30))
            import time
            deadline = time.monotonic() + 30
            while not handled and time.monotonic() < deadline:
                time.sleep(0.01)
            print(handled)
        from sagaway.otel import instrument
        try:
            instrument(app)
        except MissingExtra as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    result, handled, error = out.stdout.splitlines()
    assert (result, handled) == ("o-1", "['o-1']")
    assert error.endswith("pip install 'sagaway[otel]'") and "'otel' extra" in error
