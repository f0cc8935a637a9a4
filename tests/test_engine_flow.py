"""Flow control: `@app.saga(concurrency=, concurrency_key=, priority=)` on both backends."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from sagaway import App, ConfigurationError, InvalidInput, Permanent, Retry, SagaCompensated
from sagaway.observe.metrics import parse_labels
from sagaway.store.base import Checkpoint, RunStatus, RunUpdate
from tests.apps.flow import read_counts
from tests.conftest import wait_for, wait_status
from tests.processes import WorkerProcess


class Gauge:
    """How many runs of each key are inside a step at once, and the most there ever were."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.order: list[str] = []

    def enter(self, key: str, name: str = "") -> None:
        with self._lock:
            self.inside[key] += 1
            self.peak[key] = max(self.peak[key], self.inside[key])
            self.order.append(name)

    def leave(self, key: str) -> None:
        with self._lock:
            self.inside[key] -= 1


def limited_app(make_app, gauge: Gauge, limit: int, pause: float = 0.005, **options):
    app = make_app(**options)

    @app.step
    def work(shop: str, n: int) -> int:
        gauge.enter(shop, f"{shop}-{n}")
        try:
            time.sleep(pause)  # the work itself: others would overlap it if the limit leaked
        finally:
            gauge.leave(shop)
        return n

    @app.saga(concurrency=limit, concurrency_key=lambda shop, n: shop)
    def limited(ctx, shop: str, n: int) -> int:
        return work(shop, n)

    return app


def test_limit_per_key_holds_with_many_worker_threads_and_every_run_finishes(make_app):
    gauge = Gauge()
    app = limited_app(make_app, gauge, limit=3, concurrency=16)
    shops = ["shop-a", "shop-b", "shop-c", "shop-d"]
    runs = [app.start("limited", shops[i % 4], i) for i in range(200)]
    with app:
        for run in runs:
            assert run.result(timeout=60) in range(200)
    assert max(gauge.peak.values()) == 3  # the limit was reached ...
    assert all(peak <= 3 for peak in gauge.peak.values()), gauge.peak  # ... never passed
    assert sum(app.store.count_runs().values()) == app.store.count_runs()["succeeded"] == 200
    # Every slot was given back: nothing held, nothing queued.
    assert app.store.flow_queues() == []
    assert not any(r.flow.held for r in app.store.list_runs(limit=300))


@pytest.mark.slow
def test_limit_per_key_holds_across_two_worker_processes(store_url, make_app, tmp_path):
    log = tmp_path / "flow.json"
    env = {"SAGAWAY_TEST_FLOW_LIMIT": "2", "SAGAWAY_TEST_STEP_SECONDS": "0.01"}
    client = make_app()
    client.saga(concurrency=2, concurrency_key=lambda shop, n: shop, name="limited")(
        lambda ctx, shop, n: n
    )
    runs = [client.start("limited", f"shop-{i % 3}", i) for i in range(200)]
    workers = [
        WorkerProcess(store_url, log, concurrency=8, env_extra=env, target="tests.apps.flow:app")
        for _ in range(2)
    ]
    try:
        assert sorted(run.result(timeout=120) for run in runs) == list(range(200))
    finally:
        outputs = [worker.stop() for worker in workers]
    data = read_counts(log)
    assert data["inside"] == {"shop-0": 0, "shop-1": 0, "shop-2": 0}
    assert max(data["peak"].values()) == 2, data
    assert all(peak <= 2 for peak in data["peak"].values()), data
    # Each run's one step recorded once, by one of the two processes.
    assert all([step.name for step in run.steps] == ["work"] for run in runs), outputs


def test_priority_orders_the_runs_waiting_for_a_slot(make_app):
    app = make_app(concurrency=1)
    gate = threading.Event()
    order: list[str] = []

    @app.step
    def work(name: str, rank: int) -> str:
        order.append(name)
        if name == "first":
            gate.wait(10)
        return name

    @app.saga(concurrency=1, priority=lambda name, rank: rank)
    def ranked(ctx, name: str, rank: int) -> str:
        return work(name, rank)

    with app:
        first = app.start("ranked", "first", 0)
        wait_for(lambda: order == ["first"], what="the first run to hold the slot")
        ranks = {"low": 1, "top": 9, "mid-1": 5, "none": 0, "mid-2": 5, "high": 7}
        runs = [app.start("ranked", name, rank) for name, rank in ranks.items()]
        for run in runs:
            assert run.refresh().status == "pending"
        gate.set()
        for run in [first, *runs]:
            run.result(timeout=20)
    # Highest first; equal priorities in the order they started.
    assert order == ["first", "top", "high", "mid-1", "mid-2", "low", "none"]
    assert [r.priority for r in runs] == list(ranks.values())
    assert {r.concurrency_key for r in runs} == {""}  # one limit for the whole saga


def test_a_hot_key_does_not_starve_the_other_keys(make_app):
    gauge = Gauge()
    app = limited_app(make_app, gauge, limit=2, pause=0.01, concurrency=8)
    hot = [app.start("limited", "hot", i) for i in range(120)]
    cold = [app.start("limited", f"cold-{i % 3}", i) for i in range(6)]
    with app:
        for run in cold:
            run.result(timeout=30)
        # The cold keys, started last, finished while the hot key's backlog (2 at a time,
        # 10 ms each: over half a second of work) had barely started.
        finished_hot = sum(run.refresh().status == "succeeded" for run in hot)
        assert finished_hot < 60, finished_hot
        for run in hot:
            run.result(timeout=60)
    assert gauge.peak["hot"] == 2


def test_a_waiting_run_gives_its_slot_back_and_takes_one_again(make_app):
    app = make_app(concurrency=4)
    inside: list[str] = []

    @app.step
    def note(what: str) -> str:
        inside.append(what)
        return what

    @app.saga(concurrency=1)
    def checkout(ctx, name: str) -> str:
        note(f"{name}:before")
        info = ctx.wait("customer", timeout=60)
        note(f"{name}:after")
        return info

    with app:
        a = app.start("checkout", "a")
        wait_status(a, "waiting")
        assert not a.refresh().flow.held
        # The slot a held is free while it waits: b runs up to its own wait.
        b = app.start("checkout", "b")
        wait_status(b, "waiting")
        assert inside == ["a:before", "b:before"]
        c = app.start("checkout", "c")
        wait_status(c, "waiting")
        app.signal(a.id, "customer", "alice")
        app.signal(b.id, "customer", "bob")
        assert a.result(timeout=10) == "alice"
        assert b.result(timeout=10) == "bob"
        app.signal(c.id, "customer", "carol")
        assert c.result(timeout=10) == "carol"
    assert sorted(inside) == sorted(f"{n}:{w}" for n in "abc" for w in ("before", "after"))


def test_runs_beyond_the_limit_stay_pending_and_say_why(make_app):
    app = make_app(concurrency=4)
    gate = threading.Event()

    @app.step
    def hold(name: str) -> str:
        gate.wait(10)
        return name

    @app.saga(concurrency=1, concurrency_key=lambda name: name[:1])
    def held(ctx, name: str) -> str:
        return hold(name)

    with app:
        first = app.start("held", "a1")
        wait_status(first, "running")
        second = app.start("held", "a2")
        other = app.start("held", "b1")
        wait_status(other, "running")
        wait_for(lambda: second.refresh().flow.queued_at and second.refresh().due_at is None)
        assert second.status == "pending"
        flow = second.record.flow
        assert (flow.key, flow.limit, flow.held) == ("a", 1, False)
        [queue] = app.store.flow_queues()
        assert (queue.saga, queue.key, queue.queued, queue.held, queue.limit) == (
            "held",
            "a",
            1,
            1,
            1,
        )
        gate.set()
        assert [r.result(timeout=10) for r in (first, second, other)] == ["a1", "a2", "b1"]


def test_a_dead_workers_slot_is_freed_when_its_lease_expires(make_app):
    app = make_app(concurrency=4, lease=1.0)

    @app.saga(concurrency=1)
    def solo(ctx, n: int) -> int:
        return n

    store = app.store
    taken = app.start("solo", 1)
    queued = app.start("solo", 2)
    # A worker on another host claims the first run and dies (it never renews its lease).
    now = store.now()
    [claim] = store.claim("elsewhere:1:1:gone", 1, now, now + 1.0)
    assert claim.run.id == taken.id and claim.run.flow.held
    with app:
        assert queued.result(timeout=15) == 2
        assert taken.result(timeout=15) == 1
    assert taken.refresh().recoveries == 1
    # The takeover ran first: the slot passed to it, not to the queued run.
    assert taken.refresh().updated_at <= queued.refresh().updated_at


def test_a_cancelled_run_unwinds_without_waiting_for_a_slot(make_app):
    app = make_app(concurrency=4)
    gate = threading.Event()

    @app.step
    def hold(n: int) -> int:
        gate.wait(10)
        return n

    @app.saga(concurrency=1)
    def solo(ctx, n: int) -> int:
        return hold(n)

    with app:
        first = app.start("solo", 1)
        wait_status(first, "running")
        second = app.start("solo", 2)
        wait_for(lambda: second.refresh().due_at is None, what="the second run to queue")
        app.cancel(second.id)
        assert wait_status(second, "cancelled") == "cancelled"
        gate.set()
        assert first.result(timeout=10) == 1


@pytest.mark.parametrize(
    ("key", "priority", "message"),
    [
        (lambda order: order["shop"], None, "concurrency_key raised KeyError"),
        (lambda order: 42, None, "concurrency_key returned 42 (int); it must return a str"),
        (None, lambda order: "high", "priority returned 'high'; it must return an int"),
        (None, lambda order: True, "priority returned True; it must return an int"),
        (None, lambda order: 2**40, "it must return an int from -2147483648 to 2147483647"),
    ],
)
def test_a_bad_key_or_priority_is_invalid_input_and_stores_nothing(
    make_app, key, priority, message
):
    app = make_app()
    app.saga(name="checkout", concurrency=2, concurrency_key=key, priority=priority)(
        lambda ctx, order: order
    )
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        app.start("checkout", {"id": 1}, key="order-1")
    assert app.store.count_runs() == {}
    assert app.store.flow_queues() == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a positive int"),
        ({"concurrency": 2.5}, "concurrency must be a positive int"),
        ({"concurrency": True}, "concurrency must be a positive int"),
        ({"concurrency_key": lambda o: o}, "concurrency_key= needs concurrency=N"),
        ({"priority": lambda o: 1}, "priority= needs concurrency=N"),
        ({"concurrency": 3, "concurrency_key": "shop"}, "concurrency_key must be a function"),
        ({"concurrency": 3, "priority": 5}, "priority must be a function"),
    ],
)
def test_bad_flow_arguments_are_refused_when_the_saga_is_declared(tmp_path, options, message):
    app = App(f"sqlite:///{tmp_path}/never-opened.db")  # declaring opens no store
    with pytest.raises(ConfigurationError, match=message):
        app.saga(name="checkout", **options)(lambda ctx, order: order)
    assert "checkout" not in app.sagas
    assert not (tmp_path / "never-opened.db").exists()


def test_sagas_without_a_limit_are_untouched(make_app):
    app = make_app()

    @app.saga()
    def free(ctx, n: int) -> int:
        return n

    with app:
        run = app.start("free", 1)
        assert run.result(timeout=10) == 1
    assert run.refresh().flow is None
    assert (run.concurrency_key, run.priority) == (None, 0)


def test_the_pending_gauge_counts_queued_runs_per_key(make_app):
    app = make_app(concurrency=2)
    gate = threading.Event()

    @app.step
    def hold(shop: str, n: int) -> int:
        gate.wait(10)
        return n

    @app.saga(concurrency=1, concurrency_key=lambda shop, n: shop)
    def limited(ctx, shop: str, n: int) -> int:
        return hold(shop, n)

    with app:
        runs = [app.start("limited", "a", i) for i in range(4)]
        odd = [app.start("limited", "b,c=d", i) for i in range(2)]  # label separators
        expected = [("key=a,saga=limited", 3.0), ("key=b_c_d,saga=limited", 1.0)]

        def gauges() -> list:
            return [
                (label, value) for name, label, value in app._gauges() if name == "flow_pending"
            ]

        # Each key: one run holds the slot, the others wait in its queue.
        wait_for(lambda: gauges() == expected, what=f"the gauges {expected} (are {gauges()})")
        assert parse_labels(expected[1][0]) == {"key": "b_c_d", "saga": "limited"}
        gate.set()
        for run in runs + odd:
            run.result(timeout=10)
    assert not [g for g in app._gauges() if g[0] == "flow_pending"]


def test_the_sweep_wakes_a_queue_whose_wake_up_was_lost(make_app):
    app = make_app()
    app.saga(name="solo", concurrency=1)(lambda ctx, n: n)
    store = app.store
    runs = [app.start("solo", i) for i in range(2)]
    now = store.now()
    # One claim looks at both: the first takes the key's slot, the second joins the queue.
    [claim] = store.claim("elsewhere:1:1:x", 2, now, now + 5)
    assert claim.run.id == runs[0].id
    assert runs[1].refresh().due_at is None
    assert store.flow_sweep(now) == 0  # the key is full: nothing to wake
    # The first ends and gives its slot back, but the wake-up of the queue is lost (as when
    # a release commits while another process's claim is queueing a run).
    end = Checkpoint(
        claim.run.id,
        claim.run.epoch,
        now,
        None,
        update=RunUpdate(status=RunStatus.SUCCEEDED, owner=None, due_at=None, result="0"),
    )
    store.checkpoint(end)
    with store._write_transaction() as conn:
        conn.execute(
            store._convert("UPDATE sagaway_runs SET flow_held = 0 WHERE id = ?"), (runs[0].id,)
        )
    assert runs[1].refresh().due_at is None
    # The sweep finds the queue with a free slot and makes its first run due.
    assert store.flow_sweep(now) == 1
    assert runs[1].refresh().due_at == now
    with app:
        assert runs[1].result(timeout=10) == 1


def test_run_lists_the_api_and_prometheus_show_keys_priorities_and_queues(make_app, capsys):
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry, generate_latest

    from sagaway.api import create_app
    from sagaway.api.access import cli_actor, issue_token
    from sagaway.cli import main
    from sagaway.observe.metrics import StoreCollector

    app = make_app()
    app.saga(
        name="checkout",
        concurrency=1,
        concurrency_key=lambda order: order["shop"],
        priority=lambda order: order["rank"],
    )(lambda ctx, order: order)
    runs = [app.start("checkout", {"shop": "shop-a", "rank": rank}) for rank in (0, 5, 2)]
    now = app.store.now()
    # One claim looks at all three: the highest priority takes shop-a's one slot.
    [claim] = app.store.claim("elsewhere:1:1:x", 3, now, now + 30)
    assert claim.run.id == runs[1].id

    assert main(["runs", "list", "--db", app.url, "--json"]) == 0
    listed = {r["id"]: r["flow"] for r in json.loads(capsys.readouterr().out)}
    assert listed[runs[1].id] == {
        "key": "shop-a", "limit": 1, "priority": 5, "holds_slot": True, "queued_at": None
    }  # fmt: skip
    assert listed[runs[0].id]["priority"] == 0 and not listed[runs[0].id]["holds_slot"]
    assert listed[runs[0].id]["queued_at"] is not None
    assert main(["runs", "list", "--db", app.url]) == 0
    table = capsys.readouterr().out
    assert "key shop-a, limit 1, priority 2: waits for a slot (1/1 held)" in table
    assert "key shop-a, limit 1, priority 5 " in table  # holds the slot
    assert main(["runs", "show", runs[2].id, "--db", app.url]) == 0
    assert "flow   key shop-a, limit 1, priority 2: waits for a slot (1/1 held)" in (
        capsys.readouterr().out
    )

    token = issue_token(app.store, "viewer", "viewer", cli_actor())[1]
    client = TestClient(create_app(app))
    answer = client.get(f"/api/v1/runs/{runs[2].id}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.json()["flow"]["key"] == "shop-a" and answer.json()["flow"]["priority"] == 2
    listed = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"}).json()
    assert {r["flow"]["priority"] for r in listed["items"]} == {0, 2, 5}

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(app.store))
    text = generate_latest(registry).decode()
    assert 'sagaway_flow_pending{key="shop-a",saga="checkout"} 2.0' in text


def test_a_fork_keeps_its_origins_key_limit_and_priority(make_app):
    app = make_app()
    app.saga(
        name="checkout", concurrency=3, concurrency_key=lambda o: o["shop"], priority=lambda o: 4
    )(lambda ctx, o: o["shop"])
    with app:
        origin = app.start("checkout", {"shop": "s1"})
        assert origin.result(timeout=10) == "s1"
        fork = app.fork(origin.id, from_step=0)
        assert fork.result(timeout=10) == "s1"
    record = fork.refresh()
    assert (record.flow.key, record.flow.limit, record.flow.priority) == ("s1", 3, 4)
    assert not record.flow.held


def test_a_parent_resting_while_its_children_are_undone_gives_its_slot_back(make_app):
    app = make_app(concurrency=8)
    undo = threading.Event()

    @app.step
    def book(name: str) -> str:
        return name

    @book.compensation
    def unbook(name: str, result=None) -> None:
        if name == "a":
            assert undo.wait(20)

    @app.step(retry=Retry(attempts=1))
    def check(name: str) -> str:
        if name == "bad":
            raise Permanent("no such tenant")
        return name

    @app.saga()
    def tenant(ctx, name: str) -> str:
        book(name)
        return check(name)

    @app.saga(concurrency=1)
    def nightly(ctx, names: list) -> list:
        return ctx.map(tenant, names, concurrency=1)

    with app:
        first = app.start(nightly, ["a", "bad"])

        def resting() -> bool:
            record = first.refresh()
            return record.status == "compensating" and record.owner is None

        # The map failed; child "a" is being undone as a run, its compensation held back,
        # and the parent rests until it ends: without its slot.
        wait_for(resting, what="the parent to rest while its child is undone")
        assert not first.record.flow.held
        second = app.start(nightly, ["z"])
        assert second.result(timeout=20) == ["z"]
        undo.set()
        with pytest.raises(SagaCompensated):
            first.result(timeout=20)


@pytest.mark.slow
def test_a_slot_held_by_a_worker_killed_mid_step_passes_to_the_run_taken_over(
    store_url, make_app, tmp_path
):
    log = tmp_path / "flow.json"
    env = {"SAGAWAY_TEST_FLOW_LIMIT": "1"}
    client = make_app()
    client.saga(concurrency=1, concurrency_key=lambda shop, n: shop, name="limited")(
        lambda ctx, shop, n: n
    )
    first = client.start("limited", "shop-x", 1)
    second = client.start("limited", "shop-x", 2)
    slow = {**env, "SAGAWAY_TEST_STEP_SECONDS": "60"}
    worker = WorkerProcess(store_url, log, env_extra=slow, target="tests.apps.flow:app")
    try:
        wait_for(
            lambda: read_counts(log)["inside"].get("shop-x") == 1,
            what="the first run to be inside its step",
        )
        assert first.refresh().flow.held and second.refresh().due_at is None
        worker.kill()
        worker = WorkerProcess(store_url, log, env_extra=env, target="tests.apps.flow:app")
        assert first.result(timeout=30) == 1
        assert second.result(timeout=30) == 2
    finally:
        worker.stop()
    assert first.refresh().recoveries == 1
    # The queued run got the slot only once the run taken over had ended.
    assert second.steps[0].started_at >= first.steps[0].finished_at
