"""User code that raises a BaseException which is not an Exception (`sys.exit()`,
`KeyboardInterrupt`, `GeneratorExit`, `asyncio.CancelledError`): the step fails like any error,
the execution thread lives on, and nothing else is affected."""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from sagaway import App, Retry, SagaCompensated, SagaFailed
from tests.processes import ROOT

ESCAPES = [
    pytest.param(lambda: SystemExit(3), id="SystemExit"),
    pytest.param(KeyboardInterrupt, id="KeyboardInterrupt"),
    pytest.param(GeneratorExit, id="GeneratorExit"),
    pytest.param(asyncio.CancelledError, id="CancelledError"),
]


@pytest.mark.parametrize("make_error", ESCAPES)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_step_raising_a_base_exception_fails_and_compensates_and_the_threads_live(
    make_app, make_error, is_async, caplog
):
    app = make_app(concurrency=2)
    undone = []

    @app.step
    def reserve(order):
        return f"hold-{order}"

    @reserve.compensation
    def release(order, result=None):
        undone.append(order)

    if is_async:

        @app.step(retry=Retry(attempts=2, base=0.001, cap=0.001))
        async def charge(order):
            if order.startswith("exit"):
                raise make_error()
            return "paid"

    else:

        @app.step(retry=Retry(attempts=2, base=0.001, cap=0.001))
        def charge(order):
            if order.startswith("exit"):
                raise make_error()
            return "paid"

    @app.saga()
    def checkout(ctx, order):
        reserve(order)
        return charge(order)

    caplog.set_level(logging.WARNING, logger="sagaway")
    with app:
        # More poisoned runs than threads: before, each one killed a thread for good.
        bad = [app.start(checkout, f"exit-{i}") for i in range(3)]
        good = [app.start(checkout, f"ok-{i}") for i in range(5)]
        for run in bad:
            with pytest.raises(SagaCompensated) as caught:
                run.result(timeout=20)
            assert type(caught.value.error).__name__ == type(make_error()).__name__
        for run in good:
            assert run.result(timeout=20) == "paid"
        assert app.worker is not None
        assert all(t.is_alive() for t in app.worker._threads)
    assert sorted(undone) == ["exit-0", "exit-1", "exit-2"]
    step = bad[0].steps[1]
    assert step.name == "charge" and step.status == "failed"
    assert step.error["type"].endswith(type(make_error()).__name__)
    # An async body's CancelledError reaches the step as the future's (an Exception).
    if not (is_async and isinstance(make_error(), asyncio.CancelledError)):
        assert "is not an Exception" in caplog.text


def test_a_compensation_raising_system_exit_escalates_to_failed(make_app):
    app = make_app(concurrency=1)

    @app.step
    def reserve():
        return "hold"

    @reserve.compensation
    def release(result=None):
        sys.exit(4)

    @app.step(retry=Retry(attempts=1))
    def charge():
        raise ValueError("declined")

    @app.saga()
    def checkout(ctx):
        reserve()
        charge()

    with app:
        for _ in range(2):  # the one thread is still there for the second run
            with pytest.raises(SagaFailed) as caught:
                app.start(checkout).result(timeout=20)
            assert isinstance(caught.value.error, SystemExit)


def test_saga_code_raising_system_exit_between_steps_compensates(make_app):
    app = make_app(concurrency=1)
    undone = []

    @app.step
    def reserve():
        return "hold"

    @reserve.compensation
    def release(result=None):
        undone.append(result)

    @app.saga()
    def checkout(ctx):
        reserve()
        raise SystemExit("bye")

    with app:
        with pytest.raises(SagaCompensated):
            app.start(checkout).result(timeout=20)
    assert undone == ["hold"]


WORKER_APP = """
import sys
from sagaway import App, Retry

app = App(retry=Retry(attempts=1))

@app.step
def charge(o):
    if o == "exit":
        sys.exit(3)
    return o

@app.saga()
def checkout(ctx, o):
    return charge(o)
"""


def test_a_worker_process_survives_steps_calling_sys_exit_and_stops_at_once(tmp_path):
    (tmp_path / "exitapp.py").write_text(WORKER_APP)
    env = dict(os.environ, SAGAWAY_DB=str(tmp_path / "s.db"), PYTHONPATH=f"{tmp_path}:{ROOT}")
    env.pop("CI", None)
    starter = (
        "from exitapp import app, checkout\n"
        "for o in ['exit', 'a', 'exit', 'b', 'c', 'd', 'e']:\n"
        "    app.start(checkout, o)\n"
        "app.close()\n"
    )
    subprocess.run([sys.executable, "-c", starter], env=env, cwd=tmp_path, check=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "sagaway.cli", "worker", "exitapp:app", "--concurrency", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        app = App(f"sqlite:///{tmp_path / 's.db'}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = sorted(r.status for r in app.runs())
            if statuses.count("succeeded") == 5 and statuses.count("compensated") == 2:
                break
            time.sleep(0.1)
        assert statuses == ["compensated"] * 2 + ["succeeded"] * 5
        app.close()
        worker.send_signal(signal.SIGTERM)
        began = time.monotonic()
        output, _ = worker.communicate(timeout=20)
        assert time.monotonic() - began < 5  # no thread is stuck: it stops at once
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert b"SystemExit" in output
