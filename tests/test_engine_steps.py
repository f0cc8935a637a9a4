"""Steps: journaling, retries, Permanent, timeouts, async bodies, current_step, bad data."""

import asyncio
import threading
import time

import pytest

from sagaway import (
    Permanent,
    Retry,
    SagaCompensated,
    SerializationError,
    StepTimeout,
    current_step,
)


def test_saga_succeeds_and_journal_records_each_step_once(app):
    calls = []

    @app.step
    def add(a, b):
        calls.append((a, b))
        return a + b

    @app.saga()
    def sums(ctx, n):
        return [add(i, i) for i in range(n)]

    with app:
        run = app.start(sums, 3)
        assert run.result(timeout=10) == [0, 2, 4]
    assert run.status == "succeeded"
    assert calls == [(0, 0), (1, 1), (2, 2)]
    steps = run.steps
    assert [(s.position, s.name, s.status, s.result) for s in steps] == [
        (0, "add", "ok", 0),
        (1, "add", "ok", 2),
        (2, "add", "ok", 4),
    ]


def test_retry_attempts_counts_every_try_the_first_included(app):
    tries = []

    @app.step(retry=Retry(attempts=4, base=0.001, cap=0.002))
    def flaky():
        tries.append(current_step().attempt)
        raise ConnectionError("down")

    @app.saga()
    def once(ctx):
        flaky()

    with app:
        run = app.start(once)
        with pytest.raises(SagaCompensated) as caught:
            run.result(timeout=10)
    assert tries == [1, 2, 3, 4]
    assert isinstance(caught.value.error, ConnectionError)
    assert [e.kind for e in run.events].count("retry") == 3
    assert run.steps[0].attempts == 4


def test_transient_failure_is_retried_until_success(app):
    tries = []

    @app.step(retry=Retry(attempts=5, base=0.001, cap=0.002))
    def flaky():
        tries.append(1)
        if len(tries) < 3:
            raise TimeoutError("slow")
        return "ok"

    @app.saga()
    def once(ctx):
        return flaky()

    with app:
        assert app.start(once).result(timeout=10) == "ok"
    assert len(tries) == 3


def test_permanent_skips_the_retries(app):
    tries = []

    @app.step(retry=Retry(attempts=5, base=0.001))
    def declined():
        tries.append(1)
        raise Permanent("card declined")

    @app.saga()
    def once(ctx):
        declined()

    with app:
        with pytest.raises(SagaCompensated, match="card declined"):
            app.start(once).result(timeout=10)
    assert tries == [1]


def test_a_timeout_counts_as_a_failed_try(app):
    started = []

    @app.step(retry=Retry(attempts=2, base=0.001), timeout=0.05)
    def slow():
        started.append(current_step().attempt)
        time.sleep(0.5)

    @app.saga()
    def once(ctx):
        slow()

    with app:
        with pytest.raises(SagaCompensated) as caught:
            app.start(once).result(timeout=10)
    assert started == [1, 2]
    assert isinstance(caught.value.error, StepTimeout)
    message = "step 'slow' timed out after 0.05s (call abandoned in its thread)"
    assert message in str(caught.value.error)


def test_async_steps_run_and_time_out(app):
    @app.step
    async def fetch(x):
        await asyncio.sleep(0.001)
        return {"x": x, "key": current_step().idempotency_key}

    @app.step(retry=Retry(attempts=1), timeout=0.05)
    async def hang():
        await asyncio.sleep(5)

    @app.saga()
    def both(ctx, fail):
        got = fetch(7)
        if fail:
            hang()
        return got

    with app:
        run = app.start(both, False)
        assert run.result(timeout=10) == {"x": 7, "key": f"{run.id}/0"}
        with pytest.raises(SagaCompensated) as caught:
            app.start(both, True).result(timeout=10)
    assert isinstance(caught.value.error, StepTimeout)


def test_idempotency_key_is_stable_across_retries(app):
    keys = []

    @app.step(retry=Retry(attempts=3, base=0.001))
    def charge():
        keys.append(current_step().idempotency_key)
        if len(keys) < 3:
            raise ConnectionError("reset")

    @app.saga()
    def pay(ctx):
        charge()

    with app:
        run = app.start(pay)
        run.result(timeout=10)
    assert keys == [f"{run.id}/0"] * 3


def test_steps_called_outside_a_saga_are_plain_functions(app):
    @app.step
    def double(x):
        return 2 * x

    assert double(21) == 42
    with pytest.raises(RuntimeError, match="only available inside a step"):
        current_step()


def test_unserialisable_input_is_refused_at_start_and_nothing_is_stored(app):
    @app.saga()
    def takes(ctx, value):
        return value

    with pytest.raises(SerializationError, match=r"input of saga 'takes'.*plain data"):
        app.start(takes, object())
    assert app.runs() == []


def test_unserialisable_step_result_fails_the_step_with_a_clear_error(app):
    undone = []

    @app.step
    def first():
        return 1

    @first.compensation
    def undo_first(result=None):
        undone.append(result)

    @app.step(retry=Retry(attempts=3, base=0.001))
    def returns_object():
        return threading.Lock()

    @app.saga()
    def broken(ctx):
        first()
        returns_object()

    with app:
        run = app.start(broken)
        with pytest.raises(SagaCompensated) as caught:
            run.result(timeout=10)
    assert isinstance(caught.value.error, SerializationError)
    assert "result of step 'returns_object'" in str(caught.value.error)
    assert undone == [1]
    assert run.steps[1].status == "failed" and run.steps[1].attempts == 1


def test_results_are_what_json_gives_back_even_the_first_time(app):
    @app.step
    def pair():
        return (1, 2)

    @app.saga()
    def saga_(ctx):
        value = pair()
        return isinstance(value, list)

    with app:
        assert app.start(saga_).result(timeout=10) is True


def test_duplicate_step_names_are_rejected_with_the_fix(app):
    @app.step
    def charge():
        pass

    from sagaway import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"@app.step\(name=...\)"):

        @app.step(name="charge")
        def other():
            pass


def test_permanent_wrapping_an_error_records_the_wrapped_error(app):
    class OutOfStock(Exception):
        pass

    @app.step
    def wrapped():
        raise Permanent(OutOfStock("no mugs"))

    @app.step
    def chained():
        try:
            raise OutOfStock("no tees")
        except OutOfStock as exc:
            raise Permanent("gave up") from exc

    @app.saga()
    def saga_(ctx, which):
        {"wrapped": wrapped, "chained": chained}[which]()

    with app:
        for which, message in (("wrapped", "no mugs"), ("chained", "no tees")):
            with pytest.raises(SagaCompensated) as caught:
                app.start(saga_, which).result(timeout=10)
            assert type(caught.value.error).__name__ in ("OutOfStock", "RemoteError")
            assert message in str(caught.value.error)


def test_a_run_goes_through_the_statuses_of_the_contract(app):
    import threading

    from tests.conftest import wait_status

    gate, undo_gate = threading.Event(), threading.Event()

    @app.step
    def slow():
        gate.wait(10)

    @slow.compensation
    def undo_slow():
        undo_gate.wait(10)

    @app.saga()
    def saga_(ctx, fail):
        ctx.wait("go")
        slow()
        if fail:
            raise ValueError("no")
        return "done"

    ok, bad = app.start(saga_, False), app.start(saga_, True)
    assert ok.status == bad.status == "pending"  # no worker yet
    with app:
        assert wait_status(ok, "waiting") == wait_status(bad, "waiting") == "waiting"
        app.signal(ok.id, "go")
        app.signal(bad.id, "go")
        assert wait_status(ok, "running") == wait_status(bad, "running") == "running"
        gate.set()
        assert ok.result(timeout=10) == "done" and ok.status == "succeeded"
        assert wait_status(bad, "compensating") == "compensating"
        undo_gate.set()
        with pytest.raises(SagaCompensated):
            bad.result(timeout=10)
    assert bad.status == "compensated"
