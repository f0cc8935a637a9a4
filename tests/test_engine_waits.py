"""Durable signals and timers, and the deterministic context (now, uuid) under replay."""

import time

import pytest

from sagaway import InvalidRunState, RunNotFound, SagaCompensated, WaitTimeout
from tests.conftest import wait_for, wait_status


def test_a_signal_sent_before_the_saga_waits_is_kept(app):
    @app.saga()
    def checkout(ctx):
        return ctx.wait("customer_info")

    run = app.start(checkout)  # no worker yet: the run has not reached its wait
    app.signal(run.id, "customer_info", {"email": "a@example.com"})
    with app:
        assert run.result(timeout=10) == {"email": "a@example.com"}


def test_waiting_runs_hold_no_worker_and_resume_on_signal(app):
    calls = []

    @app.step
    def reserve(n):
        calls.append(n)
        return n

    @app.saga()
    def checkout(ctx, n):
        reserve(n)
        info = ctx.wait("customer_info", timeout=60)
        return info["email"]

    with app:
        runs = [app.start(checkout, i) for i in range(50)]  # more than a few threads
        for run in runs:
            wait_status(run, "waiting")
        # The thread that recorded the last wait is let go just after the record is written.
        wait_for(lambda: app.worker._active == 0, what="every execution thread to be let go")
        assert all(run.record.owner is None for run in runs if run.refresh())
        for i, run in enumerate(runs):
            app.signal(run.id, "customer_info", {"email": f"{i}@x"})
        assert [run.result(timeout=10) for run in runs] == [f"{i}@x" for i in range(50)]
    assert sorted(calls) == list(range(50))  # replay did not run reserve again


def test_signals_of_one_name_are_taken_in_order_one_per_wait(app):
    @app.saga()
    def collect(ctx):
        return [ctx.wait("item") for _ in range(3)]

    run = app.start(collect)
    for i in range(3):
        app.signal(run.id, "item", i)
    with app:
        assert run.result(timeout=10) == [0, 1, 2]


def test_a_wait_that_times_out_raises_WaitTimeout_inside_the_saga(app):
    @app.saga()
    def patient(ctx):
        try:
            ctx.wait("never", timeout=0.05)
        except WaitTimeout as exc:
            return f"gave up on {exc.signal}"

    with app:
        assert app.start(patient).result(timeout=10) == "gave up on never"


def test_an_uncaught_wait_timeout_compensates(app):
    released = []

    @app.step
    def reserve():
        return "hold"

    @reserve.compensation
    def release(result=None):
        released.append(result)

    @app.saga()
    def abandoned(ctx):
        reserve()
        ctx.wait("confirmed", timeout=1.2)  # long enough to park the run, not hold a thread

    with app:
        run = app.start(abandoned)
        wait_status(run, "waiting")
        with pytest.raises(SagaCompensated) as caught:
            run.result(timeout=10)
    assert isinstance(caught.value.error, WaitTimeout)
    assert released == ["hold"]


def test_the_wait_deadline_survives_replays(app):
    @app.saga()
    def saga_(ctx):
        ctx.wait("first")
        try:
            ctx.wait("second", timeout=1.5)
        except WaitTimeout:
            return "timed out"
        return "got it"

    with app:
        run = app.start(saga_)
        app.signal(run.id, "first")
        wait_for(lambda: run.refresh().wait_name == "second", what="the second wait")
        first_deadline = run.refresh().wait_deadline
        app.signal(run.id, "unrelated")  # a signal nobody waits for does not wake the run
        time.sleep(0.2)
        assert run.refresh().wait_deadline == first_deadline
        assert run.result(timeout=10) == "timed out"


def test_sleep_is_a_durable_timer(app):
    @app.saga()
    def napper(ctx):
        before = ctx.now()
        ctx.sleep(1.2)
        return (ctx.now() - before).total_seconds()

    with app:
        run = app.start(napper)
        wait_status(run, "waiting")
        assert run.refresh().due_at is not None
        assert run.result(timeout=10) >= 1.2
    assert [s.kind for s in run.steps] == ["now", "sleep", "now"]


def test_now_and_uuid_give_the_same_answers_on_replay(app):
    seen = []

    @app.saga()
    def saga_(ctx):
        values = (ctx.now().isoformat(), str(ctx.uuid()), str(ctx.uuid()))
        seen.append(values)
        ctx.wait("go")
        return values

    with app:
        run = app.start(saga_)
        wait_status(run, "waiting")
        app.signal(run.id, "go")
        result = run.result(timeout=10)
    assert len(seen) == 2 and seen[0] == seen[1] == tuple(result)
    assert result[1] != result[2]


def test_signal_errors_name_the_problem(app):
    @app.saga()
    def quick(ctx):
        return 1

    with pytest.raises(RunNotFound, match="no run with id 'nope'"):
        app.signal("nope", "x")
    with app:
        run = app.start(quick)
        run.result(timeout=10)
    with pytest.raises(InvalidRunState, match="has ended"):
        app.signal(run.id, "x")


def test_a_signal_taken_before_a_rest_does_not_wake_the_run_again(app):
    @app.saga()
    def saga_(ctx):
        first = ctx.wait("item")
        second = ctx.wait("item")
        return [first, second]

    run = app.start(saga_)
    app.signal(run.id, "item", 1)
    with app:
        wait_for(lambda: run.refresh().wait_position == 1, what="the second wait")
        time.sleep(0.3)
        assert run.refresh().epoch == 1  # claimed once: the first signal caused no extra wake
        app.signal(run.id, "item", 2)
        assert run.result(timeout=10) == [1, 2]
