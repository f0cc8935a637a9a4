"""Idempotent start, replay of recorded steps, non-determinism and unknown sagas."""

import json
import subprocess
import sys
import threading

import pytest

from sagaway import IdempotencyConflict, InvalidInput, SagaFailed
from tests.conftest import wait_status
from tests.processes import ROOT


def test_the_same_key_and_input_give_the_same_run(app):
    @app.saga()
    def checkout(ctx, cart):
        return cart["id"]

    first = app.start(checkout, {"id": "c1", "total": 10}, key="cart-42")
    again = app.start(checkout, {"total": 10, "id": "c1"}, key="cart-42")  # key order differs
    assert first.id == again.id
    assert len(app.runs()) == 1


def test_the_same_key_with_another_input_is_a_conflict(app):
    @app.saga()
    def checkout(ctx, cart):
        return cart

    run = app.start(checkout, {"id": "c1"}, key="cart-42")
    with pytest.raises(IdempotencyConflict, match=f"already used by run {run.id}"):
        app.start(checkout, {"id": "c2"}, key="cart-42")


def test_the_same_arguments_given_by_position_name_or_default_are_the_same_input(app):
    @app.saga()
    def checkout(ctx, order, amount, currency="EUR", *, gift=False):
        return [order, amount, currency, gift]

    first = app.start(checkout, "o", 1, key="k")
    assert app.start(checkout, "o", amount=1, key="k").id == first.id
    assert app.start(checkout, order="o", amount=1, currency="EUR", key="k").id == first.id
    assert app.start(checkout, "o", 1, "EUR", gift=False, key="k").id == first.id
    assert len(app.runs()) == 1


def test_a_conflicting_start_says_which_arguments_differ(app):
    @app.saga()
    def checkout(ctx, order, amount, currency="EUR"):
        return order

    app.start(checkout, "o", 1, key="k")
    with pytest.raises(IdempotencyConflict) as caught:
        app.start(checkout, "o", amount=2, currency="USD", key="k")
    assert caught.value.difference == (
        'amount: 1 stored, 2 given; currency: (default) stored, "USD" given'
    )
    assert "amount: 1 stored, 2 given" in str(caught.value)


def test_arguments_that_do_not_fit_the_saga_are_refused_at_start(app):
    @app.saga()
    def checkout(ctx, order):
        return order

    with pytest.raises(InvalidInput, match=r"signature is checkout\(ctx, order\)"):
        app.start(checkout, "o", "extra")
    assert app.runs() == []


def test_sixteen_threads_starting_one_key_make_one_run(app):
    @app.saga()
    def checkout(ctx, cart):
        return cart

    ids, barrier = [], threading.Barrier(16)

    def click():
        barrier.wait()
        ids.append(app.start(checkout, {"id": "c1"}, key="double-click").id)

    with app:
        threads = [threading.Thread(target=click) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 1 and len(ids) == 16
        assert app.get(ids[0]).result(timeout=10) == {"id": "c1"}
    assert len(app.runs()) == 1


def test_two_processes_starting_one_key_make_one_run(store_url, tmp_path):
    script = (
        "import sys\n"
        "from tests.apps.crashable import build\n"
        "app = build(sys.argv[1], sys.argv[2])\n"
        "print('\\n'.join(app.start('checkout', 'o1', key='k').id for _ in range(30)))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, store_url, str(tmp_path / "log")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    ids = set()
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        ids.update(out.split())
    assert len(ids) == 1


def test_replay_returns_recorded_results_without_running_steps_again(app):
    calls = []

    @app.step
    def reserve(n):
        calls.append(n)
        return {"hold": n}

    @app.saga()
    def saga_(ctx):
        holds = [reserve(i) for i in range(3)]
        ctx.wait("go")  # the run rests here; the signal replays it from the top
        return holds

    with app:
        run = app.start(saga_)
        wait_status(run, "waiting")
        app.signal(run.id, "go")
        assert run.result(timeout=10) == [{"hold": 0}, {"hold": 1}, {"hold": 2}]
    assert calls == [0, 1, 2]


def test_a_replay_calling_steps_in_another_order_fails_the_run_naming_the_step(app):
    order = ["reserve", "charge"]

    @app.step
    def reserve():
        return 1

    @app.step
    def charge():
        return 2

    steps = {"reserve": reserve, "charge": charge}

    @app.saga()
    def saga_(ctx):
        for name in list(order):
            steps[name]()
        ctx.wait("go")

    with app:
        run = app.start(saga_)
        wait_status(run, "waiting")
        order.reverse()  # the code "changed" while the run was in flight
        app.signal(run.id, "go")
        with pytest.raises(SagaFailed) as caught:
            run.result(timeout=10)
    message = str(caught.value.error)
    assert "replay reached step 'charge' at journal position 0" in message
    assert "records step 'reserve' there" in message
    assert any(e.kind == "escalation" for e in run.events)


def test_a_replay_passing_other_arguments_to_a_recorded_step_fails_naming_step_and_position(
    app,
):
    draws = iter([40, 55])  # what random.randint would give the first run and the replay
    shipped = []

    @app.step
    def charge(amount):
        return {"charged": amount}

    @app.step
    def ship(amount):
        shipped.append(amount)

    @app.saga()
    def checkout(ctx):
        amount = next(draws)  # non-deterministic code outside a step
        charge(amount)
        ctx.wait("go")
        ship(amount)

    with app:
        run = app.start(checkout)
        wait_status(run, "waiting")
        app.signal(run.id, "go")
        with pytest.raises(SagaFailed) as caught:
            run.result(timeout=10)
    message = str(caught.value.error)
    assert "step 'charge' at journal position 0 with other arguments" in message
    assert "not deterministic (random numbers" in message
    assert shipped == []  # nothing ran on the diverged arguments


def test_replay_with_the_same_arguments_in_another_spelling_is_not_divergence(app):
    calls = []

    @app.step
    def charge(order, amount):
        calls.append((order, amount))
        return amount

    @app.saga()
    def checkout(ctx, lines):
        total = sum(lines.values())  # a dict read back from JSON: same data, same digest
        charge("o-1", amount=total)
        ctx.wait("go")
        return charge("o-2", amount=total)

    with app:
        run = app.start(checkout, {"b": 2, "a": 1})
        wait_status(run, "waiting")
        app.signal(run.id, "go")
        assert run.result(timeout=10) == 3
    assert calls == [("o-1", 3), ("o-2", 3)]


def test_catching_non_determinism_in_saga_code_does_not_hide_it(app):
    order = ["a", "b"]

    @app.step
    def a():
        return "a"

    @app.step
    def b():
        return "b"

    @app.saga()
    def saga_(ctx):
        try:
            for name in list(order):
                {"a": a, "b": b}[name]()
        except Exception:
            pass  # careless code must not turn a broken replay into a success
        ctx.wait("go")
        return "done"

    with app:
        run = app.start(saga_)
        wait_status(run, "waiting")
        order.reverse()
        app.signal(run.id, "go")
        with pytest.raises(SagaFailed, match="journal position 0"):
            run.result(timeout=10)


def test_an_unknown_saga_fails_that_run_only(make_app):
    old = make_app()

    @old.saga()
    def retired(ctx):
        return "old"

    orphan = old.start(retired)
    new = make_app()

    @new.saga()
    def current(ctx):
        return "new"

    with new:
        fine = new.start(current)
        assert fine.result(timeout=10) == "new"
        with pytest.raises(SagaFailed) as caught:
            new.get(orphan.id).result(timeout=10)
    assert "names saga 'retired', which this app does not define" in str(caught.value.error)
    assert json.loads(orphan.refresh().error)["type"] == "sagaway.errors.UnknownSaga"
    assert [e.kind for e in orphan.events] == ["escalation"]


def test_the_saga_sees_the_same_error_on_first_execution_and_on_replay(app):
    class Declined(Exception):
        def __init__(self, message, response=None):
            super().__init__(message)
            self.response = response  # not JSON data: not recorded

    seen = []

    @app.step
    def charge():
        raise Declined("no funds", response=object())

    @app.saga()
    def saga_(ctx):
        try:
            charge()
        except Exception as exc:
            seen.append((type(exc).__name__, getattr(exc, "response", "absent")))
        ctx.wait("go")
        return "done"

    with app:
        run = app.start(saga_)
        wait_status(run, "waiting")
        app.signal(run.id, "go")
        assert run.result(timeout=10) == "done"
    assert len(seen) == 2 and seen[0] == seen[1]
