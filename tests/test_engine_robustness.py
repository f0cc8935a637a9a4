"""The engine under faults that are not the saga's: store errors, shutdowns racing claims,
interrupted writers, failing metrics observers, hosts without /proc, many reader threads."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from sagaway import EngineMetrics, Retry
from sagaway.engine import _recovery as recovery
from sagaway.store._groupcommit import GroupCommit
from tests.conftest import wait_for


def fail_checkpoint_once(app, which=1):
    """Make the store's `which`-th checkpoint raise as a locked database would."""
    real, count = app.store.checkpoint, [0]

    def flaky(cp):
        count[0] += 1
        if count[0] == which:
            raise sqlite3.OperationalError("database is locked")
        return real(cp)

    app.store.checkpoint = flaky


def test_a_store_error_mid_saga_hands_the_run_back_instead_of_failing_it(make_app):
    app = make_app(retry=Retry(attempts=1))
    undone = []

    @app.step
    def reserve():
        return "hold"

    @reserve.compensation
    def release(result=None):
        undone.append(result)

    @app.step
    def charge():
        return "paid"

    @app.saga()
    def checkout(ctx):
        reserve()
        return charge()

    fail_checkpoint_once(app)  # the write of reserve's completion, before charge runs
    with app:
        assert app.start(checkout).result(timeout=20) == "paid"
    assert undone == []  # not the saga's failure: nothing was compensated


def test_a_store_error_on_the_final_write_does_not_strand_the_run(make_app):
    app = make_app(lease=1.0)

    @app.step
    def only():
        return 1

    @app.saga()
    def single(ctx):
        return only()

    fail_checkpoint_once(app)  # the only write: the step's result and the end
    with app:
        run = app.start(single)
        assert run.result(timeout=20) == 1


def test_a_step_called_inside_a_step_body_is_a_plain_call(app):
    @app.step
    def price(sku):
        return 10

    @app.step
    def build(sku):
        return {"sku": sku, "price": price(sku)}

    @app.saga()
    def saga_(ctx):
        order = build("A")
        ctx.wait("go")  # replays from the top
        return order

    with app:
        run = app.start(saga_)
        app.signal(run.id, "go")
        assert run.result(timeout=10) == {"sku": "A", "price": 10}
    assert [s.name for s in run.steps] == ["build", "go"]


def test_result_returns_when_a_stopping_worker_was_claiming_the_run(make_app):
    client, app = make_app(), make_app()
    for each in (client, app):
        each.saga(lambda ctx: "done", name="s")
    run = client.start("s")
    real_claim, claiming = app.store.claim, threading.Event()

    def slow_claim(*args):
        claiming.set()
        time.sleep(0.3)  # widen the window in which stop() races the claim
        return real_claim(*args)

    app.store.claim = slow_claim
    worker = app.launch()
    assert claiming.wait(5)
    app.shutdown(timeout=5)
    assert worker._active == 0
    with client:
        assert client.get(run.id).result(timeout=10) == "done"


def test_a_failing_metrics_observer_never_changes_a_saga(make_app):
    class Broken(EngineMetrics):
        def step_finished(self, *args):
            raise RuntimeError("statsd socket closed")

        def finished(self, *args):
            raise RuntimeError("statsd socket closed")

    app = make_app(metrics=Broken())
    calls = []

    @app.step
    def charge():
        calls.append(1)
        return "ch_1"

    @app.saga()
    def saga_(ctx):
        return charge()

    with app:
        assert app.start(saga_).result(timeout=10) == "ch_1"
    assert calls == [1]


def test_an_interrupted_writer_does_not_wedge_group_commit():
    group = GroupCommit(lambda works: [(True, w(None)) for w in works])
    slow = threading.Thread(target=lambda: group.submit(lambda _: time.sleep(0.5)))
    slow.start()
    time.sleep(0.1)  # the slow write leads a batch; ours queues behind it
    threading.Timer(0.1, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        group.submit(lambda _: "mine")
    slow.join()
    done = []
    later = threading.Thread(target=lambda: done.append(group.submit(lambda _: "later")))
    later.start()
    later.join(3)
    assert done == ["later"]


def test_workers_are_judged_alive_on_hosts_without_proc(monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        monkeypatch.setattr(recovery, "_PROC", False)
        alive = f"{recovery._HOST}:{child.pid}:0:abcdef"
        dead = f"{recovery._HOST}:{gone.pid}:0:abcdef"
        assert recovery.owner_is_dead(alive) is False
        assert recovery.owner_is_dead(dead) is True
        elsewhere = f"another-host:{gone.pid}:0:abcdef"
        assert recovery.owner_is_dead(elsewhere) is False  # only its lease can tell
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process states need /proc")
def test_a_killed_worker_process_not_yet_reaped_counts_as_dead():
    # A SIGKILLed worker stays a zombie until its parent reaps it; its runs must be taken
    # over at the next recovery pass, not once the parent gets round to it.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{recovery._HOST}:{child.pid}:{recovery._start_ticks(child.pid)}:abc"
        assert recovery.owner_is_dead(owner) is False
        child.kill()

        def state() -> str:
            with open(f"/proc/{child.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]

        wait_for(lambda: state() == "Z", what="the killed child to become a zombie")
        assert recovery.owner_is_dead(owner) is True
    finally:
        child.kill()
        child.wait()


def test_many_reader_threads_do_not_keep_a_connection_each(app):
    @app.saga()
    def saga_(ctx):
        return 1

    run = app.start(saga_)
    fds_before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    threads = [threading.Thread(target=lambda: app.get(run.id).status) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = app.store
    if hasattr(store, "_idle_readers"):
        assert len(store._idle_readers) <= 8
    if fds_before:
        assert len(os.listdir("/proc/self/fd")) < fds_before + 30
