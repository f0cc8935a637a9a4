"""Fan-out of sagas: ctx.map over a saga and ctx.child start child runs; the parent rests
until they end, and unwinds them as runs."""

import threading

import pytest

from sagaway import (
    ConfigurationError,
    MapFailed,
    Permanent,
    Retry,
    SagaCancelled,
    SagaCompensated,
    SagaFailed,
)
from tests.conftest import wait_for, wait_status


def declare_tenants(app, log, fail=(), gate=None):
    """`tenant(ctx, name)`: two steps, each with a compensation, logged; names in `fail`
    fail at the second step; with `gate`, the first step waits for it."""

    @app.step
    def fetch(name):
        if gate is not None:
            assert gate.wait(20)
        log.append(("fetch", name))
        return f"rows of {name}"

    @fetch.compensation
    def unfetch(name, result=None):
        log.append(("unfetch", name))

    @app.step(retry=Retry(attempts=1))
    def store(name):
        if name in fail:
            raise Permanent(f"{name} cannot be stored")
        log.append(("store", name))
        return f"stored {name}"

    @store.compensation
    def unstore(name, result=None):
        log.append(("unstore", name, result))

    @app.saga()
    def tenant(ctx, name):
        fetch(name)
        return store(name)

    return tenant


def test_map_over_a_saga_starts_child_runs_and_returns_their_results_in_order(app):
    log = []
    tenant = declare_tenants(app, log, fail={"b"})

    @app.saga()
    def nightly(ctx, names):
        rows = ctx.map(tenant, names, concurrency=2, tolerated_failures=1)
        return [r if isinstance(r, str) else f"{type(r).__name__}" for r in rows]

    with app:
        run = app.start(nightly, ["a", "b", "c", "d"])
        assert run.result(timeout=30) == ["stored a", "SagaCompensated", "stored c", "stored d"]
    children = app.children(run.id)
    assert [c.saga for c in children] == ["tenant"] * 4
    assert [c.status for c in children] == ["succeeded", "compensated", "succeeded", "succeeded"]
    assert all(c.parent_id == run.id for c in children)
    (line,) = run.steps
    assert (line.kind, line.name, line.status) == ("children", "tenant", "ok")
    assert line.counts == {"items": 4, "done": 3, "failed": 1, "running": 0, "parked": 0}
    assert [b.kind for b in line.branches] == ["child"] * 4
    assert line.branches[1].args == {"run": children[1].id, "status": "compensated"}


def test_the_parent_rests_holding_no_thread_until_its_children_end(app):
    gate = threading.Event()
    tenant = declare_tenants(app, [], gate=gate)

    @app.saga()
    def nightly(ctx, names):
        return ctx.map(tenant, names)

    with app:
        run = app.start(nightly, ["a", "b", "c"])
        wait_for(lambda: len(app.children(run.id)) == 3, what="three children")
        wait_for(lambda: run.refresh().owner is None, what="the parent to rest")
        record = run.refresh()
        assert record.status == "waiting" and record.wait_name == "children:0"
        assert run.steps[0].counts["running"] == 3
        gate.set()
        assert run.result(timeout=30) == ["stored a", "stored b", "stored c"]


def test_over_tolerance_compensates_succeeded_children_as_runs_newest_first(app):
    log = []
    tenant = declare_tenants(app, log, fail={"c"})

    @app.step
    def announce(names):
        return "announced"

    @announce.compensation
    def unannounce(names, result=None):
        log.append(("unannounce",))

    @app.saga()
    def nightly(ctx, names):
        announce(names)
        return ctx.map(tenant, names, concurrency=1)

    with app:
        run = app.start(nightly, ["a", "b", "c", "d"])
        with pytest.raises(SagaCompensated) as caught:
            run.result(timeout=30)
    error = caught.value.error
    assert isinstance(error, MapFailed)
    assert [i for i, _ in error.failures] == [2]
    undone = [entry for entry in log if entry[0].startswith("un")]
    # c compensated itself when it failed; then b and a as runs, each in its own reverse
    # order; d never started; then the parent's own step.
    assert undone == [
        ("unstore", "c", None),
        ("unfetch", "c"),
        ("unstore", "b", "stored b"),
        ("unfetch", "b"),
        ("unstore", "a", "stored a"),
        ("unfetch", "a"),
        ("unannounce",),
    ]
    assert [c.status for c in app.children(run.id)] == ["compensated"] * 3


def test_ctx_child_returns_the_childs_result_or_raises_its_outcome(app):
    tenant = declare_tenants(app, [], fail={"bad"})

    @app.saga()
    def one(ctx, name):
        try:
            return ctx.child(tenant, name, key=f"one-{ctx.run_id}")
        except SagaCompensated as outcome:
            return f"child {outcome.run_id} compensated: {outcome.error}"

    with app:
        good = app.start(one, "a")
        assert good.result(timeout=30) == "stored a"
        bad = app.start(one, "bad")
        result = bad.result(timeout=30)
    (child,) = app.children(bad.id)
    assert result == f"child {child.id} compensated: bad cannot be stored"
    assert child.key == f"one-{bad.id}"


def test_ctx_child_refuses_a_key_taken_by_a_run_that_is_not_its_child(app):
    tenant = declare_tenants(app, [])

    @app.saga()
    def one(ctx):
        try:
            ctx.child(tenant, "a", key="taken")
        except ConfigurationError as exc:
            return str(exc)
        return "started"

    with app:
        app.start(tenant, "a", key="taken").result(timeout=30)
        message = app.start(one).result(timeout=30)
    assert "key 'taken' is already used" in message


def test_cancelling_the_parent_cancels_its_children_and_compensates(app):
    log = []

    @app.step
    def hold(name):
        return f"held {name}"

    @hold.compensation
    def unhold(name, result=None):
        log.append(("unhold", name))

    @app.saga()
    def waiter(ctx, name):
        hold(name)
        ctx.wait("go")
        return name

    @app.saga()
    def fleet(ctx, names):
        return ctx.map(waiter, names)

    with app:
        run = app.start(fleet, ["a", "b"])
        wait_for(
            lambda: [c.status for c in app.children(run.id)] == ["waiting", "waiting"],
            what="both children waiting",
        )
        app.cancel(run.id)
        with pytest.raises(SagaCancelled):
            run.result(timeout=30)
    assert [c.status for c in app.children(run.id)] == ["cancelled", "cancelled"]
    assert sorted(log) == [("unhold", "a"), ("unhold", "b")]


def test_a_child_whose_compensation_gives_up_fails_the_parent_and_redrive_resumes(app):
    broken = {"undo": True}
    log = []

    @app.step
    def book(name):
        return f"booked {name}"

    @book.compensation(retry=Retry(attempts=1))
    def unbook(name, result=None):
        if broken["undo"]:
            raise ConnectionError("undo service down")
        log.append(("unbook", name))

    @app.saga()
    def booking(ctx, name):
        return book(name)

    @app.step(retry=Retry(attempts=1))
    def settle(names):
        raise Permanent("settlement refused")

    @app.saga()
    def trip(ctx, names):
        ctx.map(booking, names)
        return settle(names)

    with app:
        run = app.start(trip, ["x"])
        with pytest.raises(SagaFailed):
            run.result(timeout=30)
        (child,) = app.children(run.id)
        assert child.status == "failed"
        broken["undo"] = False
        app.redrive(run.id)
        with pytest.raises(SagaCompensated):
            run.result(timeout=30)
    assert log == [("unbook", "x")]
    assert app.get(child.id).status == "compensated"


def test_a_child_run_names_its_parent_and_the_parent_lists_it(app):
    tenant = declare_tenants(app, [])

    @app.saga()
    def nightly(ctx):
        return ctx.map(tenant, ["a"])

    with app:
        run = app.start(nightly)
        run.result(timeout=30)
    (child,) = app.children(run.id)
    assert child.parent_id == run.id and app.get(child.id).parent_id == run.id
    assert run.parent_id is None
    assert app.children(run.id, status="failed") == []
    wait_status(child, "succeeded")
