"""Compensation, the pivot, escalation, redrive and cancel, as DESIGN.md specifies them."""

import json

import pytest

from sagaway import (
    InvalidRunState,
    Permanent,
    Retry,
    SagaCancelled,
    SagaCompensated,
    SagaFailed,
)
from tests.conftest import wait_status


def declare_trip(app, log, fail_at=None, undo_fails=None, pivot=None):
    """Four steps a..d, each with a compensation; `fail_at` fails for good."""

    steps = {}
    for name in "abcd":

        def body(order, _name=name):
            log.append(("do", _name))
            if _name == fail_at:
                raise Permanent(f"{_name} refused")
            return f"{_name}-done"

        def undo(order, result=None, _name=name):
            log.append(("undo", _name, result))
            if undo_fails is not None and _name in undo_fails and undo_fails[_name] > 0:
                undo_fails[_name] -= 1
                raise ConnectionError(f"undo {_name} failed")

        body.__name__ = name
        step = app.step(body, pivot=(name == pivot))
        step.compensation(undo)
        steps[name] = step

    @app.saga()
    def trip(ctx, order):
        return [steps[n](order) for n in "abcd"]

    return trip


def test_compensations_run_in_reverse_order_including_the_failing_step(app):
    log = []
    trip = declare_trip(app, log, fail_at="c")
    with app:
        run = app.start(trip, "o1")
        with pytest.raises(SagaCompensated) as caught:
            run.result(timeout=10)
    assert log == [
        ("do", "a"),
        ("do", "b"),
        ("do", "c"),
        ("undo", "c", None),  # the failing step itself: its call may have taken effect
        ("undo", "b", "b-done"),
        ("undo", "a", "a-done"),
    ]
    assert isinstance(caught.value.error, Permanent)
    assert run.status == "compensated"
    undone = [(s.position, s.name) for s in run.steps if s.phase == "compensation"]
    assert sorted(undone) == [(0, "a"), (1, "b"), (2, "c")]


def test_steps_without_a_compensation_are_skipped_when_unwinding(app):
    log = []

    @app.step
    def note():
        log.append("note")

    @app.step
    def hold():
        log.append("hold")

    @hold.compensation
    def release():
        log.append("release")

    @app.saga()
    def saga_(ctx):
        hold()
        note()
        raise ValueError("saga code failed")

    with app:
        with pytest.raises(SagaCompensated, match="saga code failed"):
            app.start(saga_).result(timeout=10)
    assert log == ["hold", "note", "release"]


def test_failures_after_the_pivot_are_not_compensated_and_mark_failed(app):
    log = []
    trip = declare_trip(app, log, fail_at="d", pivot="c")
    with app:
        run = app.start(trip, "o1")
        with pytest.raises(SagaFailed, match="at step 'd'"):
            run.result(timeout=10)
    assert not [entry for entry in log if entry[0] == "undo"]
    assert any(e.kind == "escalation" for e in run.events)


def test_a_failing_pivot_compensates_the_steps_before_it(app):
    log = []
    trip = declare_trip(app, log, fail_at="c", pivot="c")
    with app:
        with pytest.raises(SagaCompensated):
            app.start(trip, "o1").result(timeout=10)
    assert [e for e in log if e[0] == "undo"] == [
        ("undo", "c", None),
        ("undo", "b", "b-done"),
        ("undo", "a", "a-done"),
    ]


def test_failed_compensation_stops_unwinding_and_marks_failed(app, caplog):
    log = []
    trip = declare_trip(app, log, fail_at="c", undo_fails={"b": 99})
    with app, caplog.at_level("WARNING", logger="sagaway"):
        run = app.start(trip, "o1")
        with pytest.raises(SagaFailed, match="while compensating step 'b'") as caught:
            run.result(timeout=10)
    assert isinstance(caught.value.error, ConnectionError)
    undos = [e[1] for e in log if e[0] == "undo"]
    assert undos == ["c", "b", "b", "b"]  # 3 tries of b (fixture retry), a never reached
    escalations = [json.loads(e.data) for e in run.events if e.kind == "escalation"]
    assert escalations and escalations[0]["step"] == "b"
    # An operator watching the worker's log hears of it too.
    warned = [r.getMessage() for r in caplog.records if "needs attention" in r.getMessage()]
    assert len(warned) == 1 and run.id in warned[0]
    assert "step=b, reason=compensation exhausted its retries" in warned[0]


def test_redrive_resumes_unwinding_from_the_failed_compensation(app):
    log = []
    fails = {"b": 3}  # b's compensation fails its 3 tries, then works after redrive
    trip = declare_trip(app, log, fail_at="c", undo_fails=fails)
    with app:
        run = app.start(trip, "o1")
        with pytest.raises(SagaFailed):
            run.result(timeout=10)
        log.clear()
        app.redrive(run.id)
        with pytest.raises(SagaCompensated) as caught:
            run.result(timeout=10)
    assert log == [("undo", "b", "b-done"), ("undo", "a", "a-done")]  # c is not undone twice
    assert isinstance(caught.value.error, Permanent)  # the original error, not b's
    assert [e.kind for e in run.events].count("redriven") == 1


def test_redrive_after_the_pivot_reruns_the_failed_step_and_continues(app):
    state = {"mail_down": True}
    calls = []

    @app.step(pivot=True)
    def charge():
        calls.append("charge")
        return "paid"

    @app.step(retry=Retry(attempts=2, base=0.001))
    def mail():
        calls.append("mail")
        if state["mail_down"]:
            raise ConnectionError("smtp down")
        return "sent"

    @app.saga()
    def order(ctx):
        return [charge(), mail()]

    with app:
        run = app.start(order)
        with pytest.raises(SagaFailed):
            run.result(timeout=10)
        state["mail_down"] = False
        app.redrive(run.id)
        assert run.result(timeout=10) == ["paid", "sent"]
    assert calls == ["charge", "mail", "mail", "mail"]


def test_redrive_refuses_runs_that_did_not_fail(app):
    @app.saga()
    def nothing(ctx):
        return 1

    with app:
        run = app.start(nothing)
        run.result(timeout=10)
        with pytest.raises(InvalidRunState, match="only failed runs"):
            app.redrive(run.id)


def test_cancel_compensates_what_was_done_and_ends_cancelled(app):
    log = []

    @app.step
    def reserve():
        log.append("reserve")
        return "hold-1"

    @reserve.compensation
    def release(result=None):
        log.append(("release", result))

    @app.saga()
    def checkout(ctx):
        reserve()
        ctx.wait("confirmed", timeout=60)
        log.append("never")

    with app:
        run = app.start(checkout)
        wait_status(run, "waiting")
        app.cancel(run.id)
        with pytest.raises(SagaCancelled):
            run.result(timeout=10)
    assert log == ["reserve", ("release", "hold-1")]


def test_cancel_of_a_run_past_its_pivot_is_refused(app):
    @app.step(pivot=True)
    def charge():
        return 1

    @app.saga()
    def order(ctx):
        charge()
        ctx.wait("shipped")

    with app:
        run = app.start(order)
        wait_status(run, "waiting")
        with pytest.raises(InvalidRunState, match="passed its pivot"):
            app.cancel(run.id)
        app.signal(run.id, "shipped")
        run.result(timeout=10)
        with pytest.raises(InvalidRunState, match="already ended"):
            app.cancel(run.id)


def test_cancel_of_a_running_run_takes_effect_at_the_next_step(app):
    import threading

    entered, go_on = threading.Event(), threading.Event()
    log = []

    @app.step
    def slow():
        entered.set()
        go_on.wait(10)
        log.append("slow")

    @slow.compensation
    def undo_slow():
        log.append("undo slow")

    @app.step
    def after():
        log.append("after")

    @app.saga()
    def saga_(ctx):
        slow()
        after()

    with app:
        run = app.start(saga_)
        assert entered.wait(10)
        app.cancel(run.id)
        go_on.set()
        with pytest.raises(SagaCancelled):
            run.result(timeout=10)
    assert log == ["slow", "undo slow"]


def test_a_cancel_accepted_while_a_step_runs_is_not_lost_when_the_saga_then_waits(app):
    import threading

    inside, go_on = threading.Event(), threading.Event()
    undone = []

    @app.step
    def hold():
        inside.set()
        go_on.wait(10)
        return "held"

    @hold.compensation
    def release(result=None):
        undone.append(result)

    @app.saga()
    def saga_(ctx):
        hold()
        ctx.wait("confirmed")  # no timeout: a lost cancel would leave it waiting forever

    with app:
        run = app.start(saga_)
        assert inside.wait(10)
        app.cancel(run.id)
        go_on.set()
        with pytest.raises(SagaCancelled):
            run.result(timeout=10)
    assert undone == ["held"]


def test_redrive_reruns_a_failed_step_even_when_the_saga_wrapped_its_error(app):
    state = {"down": True}
    calls = []

    class OrderFailed(Exception):
        pass

    @app.step(pivot=True)
    def charge():
        return "paid"

    @app.step(retry=Retry(attempts=1))
    def mail():
        calls.append(1)
        if state["down"]:
            raise ConnectionError("smtp down")
        return "sent"

    @app.saga()
    def order(ctx):
        charge()
        try:
            return mail()
        except ConnectionError as exc:
            raise OrderFailed("could not confirm") from exc

    with app:
        run = app.start(order)
        with pytest.raises(SagaFailed):
            run.result(timeout=10)
        state["down"] = False
        app.redrive(run.id)
        assert run.result(timeout=10) == "sent"
    assert len(calls) == 2


def test_redrive_after_an_uncaught_wait_timeout_waits_again(app):
    @app.step(pivot=True)
    def charge():
        return "paid"

    @app.saga()
    def order(ctx):
        charge()
        return ctx.wait("shipped", timeout=0.2)

    with app:
        run = app.start(order)
        with pytest.raises(SagaFailed):
            run.result(timeout=10)
        app.signal(run.id, "shipped", {"tracking": "X"})
        app.redrive(run.id)
        assert run.result(timeout=10) == {"tracking": "X"}
