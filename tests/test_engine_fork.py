"""app.fork: a new run of the same input that reuses the journal before a position and runs
the rest anew, linked to its origin."""

import pytest

from sagaway import (
    ConfigurationError,
    IdempotencyConflict,
    InvalidRunState,
    Permanent,
    RunNotFound,
    SagaCompensated,
)
from tests.conftest import wait_status


def declare_five(app, calls, broken=None):
    """Five steps s1..s5; `broken` names steps that refuse while in it."""
    broken = broken if broken is not None else set()
    steps = []
    for number in range(1, 6):
        name = f"s{number}"

        def body(order, _name=name):
            calls.append(_name)
            if _name in broken:
                raise Permanent(f"{_name} refused")
            return f"{_name}:{order}"

        body.__name__ = name
        step = app.step(body)
        step.compensation(lambda order, result=None, _name=name: calls.append(f"undo {_name}"))
        steps.append(step)

    @app.saga()
    def five(ctx, order):
        return [step(order) for step in steps]

    return five


def test_fork_from_step_3_of_5_reuses_steps_1_and_2_and_runs_3_to_5(app):
    calls = []
    five = declare_five(app, calls)
    with app:
        origin = app.start(five, "o1")
        assert origin.result(timeout=10) == [f"s{n}:o1" for n in range(1, 6)]
        calls.clear()
        fork = app.fork(origin.id, from_step=2)
        assert fork.result(timeout=10) == [f"s{n}:o1" for n in range(1, 6)]
    assert calls == ["s3", "s4", "s5"]
    assert fork.id != origin.id
    assert fork.forked_from == origin.id
    assert origin.forked_from is None
    assert fork.input == origin.input
    assert [e.kind for e in fork.events][:1] == ["forked"]
    assert "fork_created" in [e.kind for e in origin.events]
    assert app.store.forks_of(origin.id)[0].run_id == fork.id


def test_fork_of_a_compensated_run_runs_the_failed_step_again_with_the_fixed_code(app):
    calls, broken = [], {"s4"}
    five = declare_five(app, calls, broken)
    with app:
        origin = app.start(five, "o2")
        with pytest.raises(SagaCompensated):
            origin.result(timeout=10)
        broken.clear()  # the fix is deployed
        calls.clear()
        fork = app.fork(origin.id, from_step=0)
        assert fork.result(timeout=10)[3] == "s4:o2"
    assert calls == ["s1", "s2", "s3", "s4", "s5"]


def test_fork_refuses_a_run_that_has_not_ended(app):
    @app.saga()
    def waits(ctx):
        ctx.wait("go")

    with app:
        run = app.start(waits)
        wait_status(run, "waiting")
        with pytest.raises(InvalidRunState, match="only a run that has ended can be forked"):
            app.fork(run.id, from_step=0)


def test_fork_refuses_to_reuse_a_failed_entry_and_a_position_outside_the_journal(app):
    calls = []
    five = declare_five(app, calls, {"s3"})
    with app:
        origin = app.start(five, "o3")
        with pytest.raises(SagaCompensated):
            origin.result(timeout=10)
    with pytest.raises(InvalidRunState, match="from_step=2 or less"):
        app.fork(origin.id, from_step=3)
    with pytest.raises(ConfigurationError, match="outside run"):
        app.fork(origin.id, from_step=4)
    with pytest.raises(ConfigurationError, match="outside run"):
        app.fork(origin.id, from_step=-1)
    with pytest.raises(RunNotFound):
        app.fork("no-such-run", from_step=0)
    assert app.store.forks_of(origin.id) == []


def test_fork_with_a_key_is_idempotent_and_refuses_the_key_for_another_fork(app):
    calls = []
    five = declare_five(app, calls)
    with app:
        origin = app.start(five, "o4")
        origin.result(timeout=10)
        first = app.fork(origin.id, from_step=1, key="fork-o4")
        again = app.fork(origin.id, from_step=1, key="fork-o4")
        assert again.id == first.id
        with pytest.raises(IdempotencyConflict):
            app.fork(origin.id, from_step=2, key="fork-o4")
        first.result(timeout=10)
    assert len(app.store.forks_of(origin.id)) == 1


def test_pruning_a_fork_removes_its_link(app):
    calls = []
    five = declare_five(app, calls)
    with app:
        origin = app.start(five, "o5")
        origin.result(timeout=10)
        fork = app.fork(origin.id, from_step=5)
        fork.result(timeout=10)
    assert calls.count("s1") == 1  # from_step=5 reuses all five
    assert app.prune_runs(0) == 2
    assert app.store.fork_origin(fork.id) is None
