"""Fan-out of steps inside a saga: ctx.map on this worker's threads and ctx.gather, as
DESIGN.md ("Fan-out inside a saga") specifies them."""

import threading
import time

import pytest

from sagaway import (
    ConfigurationError,
    MapFailed,
    NonDeterminismError,
    Permanent,
    Retry,
    SagaCancelled,
    SagaCompensated,
    SagaFailed,
)
from sagaway.resilience import CircuitBreaker
from tests.conftest import wait_for, wait_status


class Gauge:
    """Counts bodies in flight and remembers the most at once."""

    def __init__(self):
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


def test_map_runs_at_most_concurrency_branches_at_once_and_more_than_one(app):
    gauge, gate = Gauge(), threading.Event()

    @app.step
    def sync(tenant):
        with gauge:
            gate.wait(10)
        return f"synced {tenant}"

    @app.saga()
    def nightly(ctx, tenants):
        return ctx.map(sync, tenants, concurrency=3)

    tenants = [f"t{i}" for i in range(10)]
    with app:
        run = app.start(nightly, tenants)
        wait_for(lambda: gauge.now == 3, what="three branches in flight")
        time.sleep(0.2)  # a fourth would have started by now if the limit did not hold
        assert gauge.now == 3
        gate.set()
        assert run.result(timeout=20) == [f"synced {t}" for t in tenants]
    assert gauge.peak == 3


def test_results_come_back_in_input_order_whatever_the_completion_order(app):
    done = {i: threading.Event() for i in range(4)}
    finished = []

    @app.step
    def fetch(i):
        if i < 3:
            assert done[i + 1].wait(10)  # each item finishes after the next one
        finished.append(i)
        done[i].set()
        return i * i

    @app.saga()
    def fan(ctx):
        return ctx.map(fetch, [0, 1, 2, 3], concurrency=4)

    with app:
        assert app.start(fan).result(timeout=20) == [0, 1, 4, 9]
    assert finished == [3, 2, 1, 0]


def _failing_map(app, failing, tolerated, concurrency=1):
    @app.step
    def check(i):
        if i in failing:
            raise Permanent(f"item {i} is broken")
        return i

    @app.saga()
    def batch(ctx, n):
        try:
            values = ctx.map(check, list(range(n)), concurrency=concurrency,
                             tolerated_failures=tolerated)  # fmt: skip
        except MapFailed as failed:
            return {
                "failed": [[i, type(e).__name__, str(e)] for i, e in failed.failures],
                "total": failed.total,
                "tolerated": failed.tolerated,
            }
        return [v if isinstance(v, int) else f"{type(v).__name__}: {v}" for v in values]

    return batch


@pytest.mark.parametrize("tolerated", [2, 0.2, 0.25])  # a count; 20 % and 25 % of 10, down: 2
def test_tolerated_failures_hold_their_exception_in_place(app, tolerated):
    batch = _failing_map(app, failing={2, 5}, tolerated=tolerated, concurrency=4)
    with app:
        result = app.start(batch, 10).result(timeout=20)
    expected = list(range(10))
    expected[2] = "Permanent: item 2 is broken"
    expected[5] = "Permanent: item 5 is broken"
    assert result == expected


@pytest.mark.parametrize("tolerated", [1, 0.15, 0.0])  # 1 and 1.5 rounded down, then none
def test_failures_beyond_the_tolerance_raise_map_failed_listing_them(app, tolerated):
    batch = _failing_map(app, failing={2, 5}, tolerated=tolerated)
    with app:
        result = app.start(batch, 10).result(timeout=20)
    allowed = int(tolerated * 10) if isinstance(tolerated, float) else tolerated
    failed = [[2, "Permanent", "item 2 is broken"], [5, "Permanent", "item 5 is broken"]]
    # One at a time: the map stops at the failure that passes the tolerance.
    assert result == {"failed": failed[: allowed + 1], "total": 10, "tolerated": allowed}


def test_over_tolerance_compensates_finished_branches_newest_first(app):
    log = []
    release = threading.Event()

    @app.step
    def prepare(batch):
        return "prepared"

    @prepare.compensation
    def unprepare(batch, result=None):
        log.append(("undo prepare", result))

    @app.step(retry=Retry(attempts=1))
    def push(i):
        if i == 0:
            assert release.wait(10)  # finishes last, after item 2 failed
        if i == 2:
            raise ConnectionError("item 2 refused")
        return f"pushed {i}"

    @push.compensation
    def unpush(i, result=None):
        log.append((i, result))

    @app.saga()
    def batch(ctx):
        prepare("b")
        return ctx.map(push, [0, 1, 2, 3], concurrency=2)

    with app:
        run = app.start(batch)

        def failed_recorded():
            maps = [s for s in run.steps if s.kind == "map"]
            return maps and any(b.index == 2 and b.status == "failed" for b in maps[0].branches)

        wait_for(failed_recorded, what="item 2's failure to be recorded")
        release.set()
        with pytest.raises(SagaCompensated) as caught:
            run.result(timeout=20)
    assert isinstance(caught.value.error, MapFailed)
    assert [i for i, _ in caught.value.error.failures] == [2]
    # Item 3 never started (no branch starts past the tolerance); item 0 was awaited.
    assert log == [
        (0, "pushed 0"),
        (2, None),
        (1, "pushed 1"),
        ("undo prepare", "prepared"),
    ]
    undone = [(s.position, s.index) for s in run.steps if s.phase == "compensation"]
    assert sorted(undone, key=str) == sorted([(1, 0), (1, 1), (1, 2), (0, None)], key=str)


def test_gather_runs_bound_steps_at_once_and_returns_their_results_in_order(app):
    both = threading.Barrier(2, timeout=10)

    @app.step
    def reserve_stock(cart):
        both.wait()  # only passes when the other branch runs at the same time
        return {"hold": cart}

    @app.step
    async def authorize(card, amount=0):
        both.wait()
        return {"auth": card, "amount": amount}

    @app.saga()
    def checkout(ctx, cart, card):
        a, b = ctx.gather(reserve_stock.bind(cart), authorize.bind(card, amount=5))
        return [a, b]

    with app:
        result = app.start(checkout, "c1", "tok").result(timeout=20)
    assert result == [{"hold": "c1"}, {"auth": "tok", "amount": 5}]


def test_a_failing_gather_raises_map_failed_and_compensates_the_other_branch(app):
    undone = []

    @app.step
    def reserve(cart):
        return "held"

    @reserve.compensation
    def release(cart, result=None):
        undone.append(("release", result))

    @app.step(retry=Retry(attempts=1))
    def authorize(card):
        raise Permanent("card declined")

    @authorize.compensation
    def void(card, result=None):
        undone.append(("void", result))

    @app.saga()
    def checkout(ctx):
        return ctx.gather(reserve.bind("c"), authorize.bind("k"))

    with app:
        with pytest.raises(SagaCompensated) as caught:
            app.start(checkout).result(timeout=20)
    assert isinstance(caught.value.error, MapFailed)
    assert sorted(undone) == [("release", "held"), ("void", None)]


def test_async_steps_map_on_the_event_loop(app):
    import asyncio

    gauge = Gauge()

    @app.step
    async def ping(i):
        with gauge:
            await asyncio.sleep(0.05)
        return i + 1

    @app.saga()
    def pings(ctx):
        return ctx.map(ping, list(range(8)), concurrency=4)

    with app:
        assert app.start(pings).result(timeout=20) == list(range(1, 9))
    assert 1 <= gauge.peak <= 4


def test_a_finished_map_replays_from_the_journal_without_running_again(app):
    calls = []

    @app.step
    def count(i):
        calls.append(i)
        return i

    @app.saga()
    def twice(ctx):
        first = ctx.map(count, [1, 2, 3], concurrency=2)
        ctx.wait("go")  # rests: the next execution replays the map from the journal
        return first

    with app:
        run = app.start(twice)
        wait_status(run, "waiting")
        app.signal(run.id, "go")
        assert run.result(timeout=20) == [1, 2, 3]
    assert sorted(calls) == [1, 2, 3]


def test_other_items_on_replay_are_non_determinism(app):
    items = {"now": [1, 2, 3]}

    @app.step
    def count(i):
        return i

    @app.saga()
    def drifting(ctx):
        ctx.map(count, list(items["now"]))
        ctx.wait("go")
        return "done"

    with app:
        run = app.start(drifting)
        wait_status(run, "waiting")
        items["now"] = [1, 2, 4]
        app.signal(run.id, "go")
        with pytest.raises(Exception) as caught:
            run.result(timeout=20)
    assert isinstance(caught.value.error, NonDeterminismError)
    assert "other items" in str(caught.value.error)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ctx, s: ctx.map(s, [1, 2], concurrency=0), "concurrency=0 must be a whole"),
        (lambda ctx, s: ctx.map(s, {1, 2}), "items must be a list (got set)"),
        (lambda ctx, s: ctx.map(lambda x: x, [1, 2]), "fn must be a step (@app.step)"),
        (lambda ctx, s: ctx.map(s, [1], tolerated_failures=1.5), "from 0 to below 1"),
        (lambda ctx, s: ctx.map(s, [1], tolerated_failures=-1), "0 or more failed"),
        (lambda ctx, s: ctx.gather(s, s), "pass step calls made with step.bind"),
        (lambda ctx, s: ctx.child(s, 1), "pass a saga of this app (@app.saga)"),
    ],
)
def test_bad_arguments_are_refused_at_the_call_with_the_journal_untouched(app, call, message):
    ran = []

    @app.step
    def work(x):
        ran.append(x)
        return x

    @app.saga()
    def careless(ctx):
        try:
            call(ctx, work)
        except ConfigurationError as exc:
            return str(exc)
        return "accepted"

    with app:
        run = app.start(careless)
        assert message in run.result(timeout=20)
    assert run.steps == [] and ran == []


def test_parked_branches_hold_no_thread_and_the_map_completes_when_the_breaker_closes(app):
    breaker = CircuitBreaker("crm", failure_rate=0.5, min_calls=2, window=4, open_for=2.5)
    down = {"crm": True}
    calls = []

    @app.step(breaker=breaker, retry=Retry(attempts=3, base=0.001), deadline=60)
    def push(i):
        calls.append(i)
        if down["crm"]:
            raise ConnectionError("crm unavailable")
        return i

    @app.saga()
    def sync(ctx):
        return ctx.map(push, list(range(6)), concurrency=2)

    with app:
        run = app.start(sync)  # the first failures open the breaker; every branch parks
        wait_for(
            lambda: run.refresh().wait_name == "park:push" and run.record.owner is None,
            what="the run to rest while its branches are parked",
        )
        record = run.refresh()
        assert record.status == "waiting"
        assert record.wait_deadline - record.created_at == pytest.approx(60, abs=5)
        (line,) = run.steps
        assert line.counts["parked"] >= 1 and line.counts["done"] == 0
        tried = len(calls)
        down["crm"] = False
        assert run.result(timeout=30) == list(range(6))
    assert tried <= 4  # parked branches did not hammer the service
    assert any(e.kind == "parked" for e in run.events)
    branches = run.steps[0].branches
    assert [(b.index, b.status) for b in branches] == [(i, "ok") for i in range(6)]


def test_run_steps_show_branches_grouped_under_their_map_with_counts(app):
    @app.step
    def check(i):
        if i == 1:
            raise Permanent("no")
        return i

    @app.saga()
    def batch(ctx):
        ctx.map(check, [0, 1, 2], concurrency=1, tolerated_failures=1)
        return "ok"

    with app:
        run = app.start(batch)
        assert run.result(timeout=20) == "ok"
    (line,) = run.steps
    assert (line.position, line.kind, line.name, line.status) == (0, "map", "check", "ok")
    assert line.counts == {"items": 3, "done": 2, "failed": 1, "running": 0, "parked": 0}
    assert [(b.index, b.status) for b in line.branches] == [(0, "ok"), (1, "failed"), (2, "ok")]
    assert all(b.position == 0 for b in line.branches)


def test_each_branch_has_its_own_stable_idempotency_key(app):
    from sagaway import current_step

    keys = {}

    @app.step
    def charge(i):
        keys[i] = current_step().idempotency_key
        return i

    @app.saga()
    def batch(ctx):
        ctx.now()
        return ctx.map(charge, [10, 11])

    with app:
        run = app.start(batch)
        run.result(timeout=20)
    assert keys == {10: f"{run.id}/1.0", 11: f"{run.id}/1.1"}


def test_a_branch_publishes_with_its_completion_only(app):
    from sagaway import current_step

    @app.step(retry=Retry(attempts=1))
    def notify(i):
        current_step().publish("tenants.synced", {"tenant": i})
        if i == 1:
            raise Permanent("tenant 1 failed after publishing")  # its message is dropped
        return i

    @app.saga()
    def batch(ctx):
        return [repr(r) for r in ctx.map(notify, [0, 1, 2], tolerated_failures=1)]

    with app:
        app.start(batch).result(timeout=20)
    (topic,) = [t for t in app.store.topics() if t.topic == "tenants.synced"]
    assert topic.messages == 2


def test_redrive_after_the_pivot_reruns_the_failed_branches_only(app):
    broken = {"item 1": True}
    calls = []

    @app.step(pivot=True)
    def capture(batch):
        return "captured"

    @app.step(retry=Retry(attempts=1))
    def ship(i):
        calls.append(i)
        if i == 1 and broken["item 1"]:
            raise ConnectionError("carrier down")
        return f"shipped {i}"

    @app.saga()
    def fulfil(ctx):
        capture("b")
        return ctx.map(ship, [0, 1, 2], concurrency=1)

    with app:
        run = app.start(fulfil)
        with pytest.raises(SagaFailed) as caught:
            run.result(timeout=20)
        assert isinstance(caught.value.error, MapFailed)
        broken["item 1"] = False
        app.redrive(run.id)
        assert run.result(timeout=20) == ["shipped 0", "shipped 1", "shipped 2"]
    assert calls == [0, 1, 1, 2]  # item 0 finished before: not again; 2 never started


def test_a_pivot_step_cannot_be_mapped(app):
    @app.step(pivot=True)
    def capture(i):
        return i

    @app.saga()
    def batch(ctx):
        try:
            ctx.map(capture, [1, 2])
        except ConfigurationError as exc:
            return str(exc)
        return "mapped"

    with app:
        assert "is a pivot" in app.start(batch).result(timeout=20)


def test_an_empty_map_returns_an_empty_list_and_keeps_its_place(app):
    @app.step
    def work(i):
        return i

    @app.saga()
    def batch(ctx):
        empty = ctx.map(work, [])
        return [empty, work(7)]

    with app:
        run = app.start(batch)
        assert run.result(timeout=20) == [[], 7]
    assert [(s.position, s.kind) for s in run.steps] == [(0, "map"), (1, "step")]


def test_cancel_stops_a_map_at_its_next_write_and_compensates_what_ran(app):
    gate, started = threading.Event(), threading.Event()
    undone = []
    runs = []

    def recorded(i):
        lines = [s for s in runs[0].steps if s.kind == "map"]
        return lines and any(b.index == i for b in lines[0].branches)

    @app.step
    def push(i):
        if i == 0:
            started.set()
            assert gate.wait(10)
        else:  # each branch ends once the one before is written: the map sees the cancel
            wait_for(lambda: recorded(i - 1), what=f"branch {i - 1} written")
        return i

    @push.compensation
    def unpush(i, result=None):
        undone.append((i, result))

    @app.saga()
    def batch(ctx):
        return ctx.map(push, list(range(6)), concurrency=1)

    with app:
        run = app.start(batch)
        runs.append(run)
        assert started.wait(10)
        app.cancel(run.id)
        gate.set()
        with pytest.raises(SagaCancelled):
            run.result(timeout=20)
    ran = sorted(b.index for b in run.steps[0].branches)
    assert len(ran) < 6  # the map stopped
    assert sorted(undone) == [(i, i) for i in ran]  # every branch that ran, undone


def test_the_deploy_gate_replays_a_finished_map_and_checks_what_follows(app):
    version = {"after": "ship"}

    @app.step
    def sync(i):
        return i

    @app.step
    def ship(x):
        return x

    @app.step
    def post(x):
        return x

    @app.saga()
    def nightly(ctx):
        ctx.map(sync, [1, 2, 3], concurrency=2)
        (ship if version["after"] == "ship" else post)("x")
        ctx.wait("go")
        return "done"

    with app:
        run = app.start(nightly)
        wait_status(run, "waiting")
    assert [d for _, d in app.check_runs()] == [None]
    version["after"] = "post"  # code that changed after the map: the gate sees it
    (divergence,) = [d for _, d in app.check_runs() if d is not None]
    assert (divergence.position, divergence.recorded, divergence.found) == (
        1, "step ship", "step post",
    )  # fmt: skip


def test_a_fork_after_a_map_reuses_its_branches_and_runs_the_rest(app):
    calls = []
    broken = {"ship": True}

    @app.step
    def sync(i):
        calls.append(i)
        return i * 10

    @app.step(retry=Retry(attempts=1))
    def ship(rows):
        if broken["ship"]:
            raise Permanent("carrier down")
        return sum(rows)

    @app.saga()
    def nightly(ctx):
        rows = ctx.map(sync, [1, 2, 3], concurrency=2)
        return ship(rows)

    with app:
        with pytest.raises(SagaCompensated):
            app.start(nightly).result(timeout=20)
        origin = app.runs(saga="nightly")[0]
        broken["ship"] = False
        fork = app.fork(origin.id, from_step=1)
        assert fork.result(timeout=20) == 60
    assert sorted(calls) == [1, 2, 3]  # the map's branches were reused, not run again
