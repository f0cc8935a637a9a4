"""Crash safety with real processes killed by SIGKILL; leases, takeover and fencing."""

import signal
import time

import pytest

from sagaway import LeaseLost, SagaCompensated
from sagaway.store.base import Checkpoint, JournalEntry
from tests.apps.crashable import build
from tests.conftest import wait_for, wait_status
from tests.processes import WorkerProcess, body_counts

pytestmark = pytest.mark.slow


@pytest.fixture
def log(tmp_path):
    return tmp_path / "bodies.log"


def hang(log, name):
    marker = log.with_name(f"{log.name}.hang-{name}")
    marker.touch()
    return marker


def test_sigkill_mid_step_reruns_only_the_interrupted_step(store_url, log):
    client = build(store_url, str(log))
    marker = hang(log, "charge")
    worker = WorkerProcess(store_url, log, lease=30)
    try:
        run = client.start("checkout", "o1")
        wait_for(lambda: body_counts(log)[("charge", "o1")] == 1, what="charge to start")
        worker.kill()
        marker.unlink()
        started = time.monotonic()
        worker = WorkerProcess(store_url, log, lease=30)
        assert run.result(timeout=20) == {
            "hold": "hold-o1",
            "charge": "charge-o1",
            "parcel": "parcel-o1",
        }
        # The dead worker's process is gone: taken over at once, not after the 30 s lease.
        assert time.monotonic() - started < 15
    finally:
        worker.stop()
        client.close()
    counts = body_counts(log)
    assert counts[("reserve", "o1")] == 1  # recorded: never again
    assert counts[("charge", "o1")] == 2  # interrupted: again
    charges = [line.split() for line in log.read_text().splitlines() if line.startswith("charge")]
    assert charges[0][2] != charges[1][2]  # two processes ...
    assert charges[0][3] == charges[1][3] == f"{run.id}/1"  # ... one idempotency key
    assert counts[("ship", "o1")] == 1
    assert run.refresh().recoveries == 1
    assert [e.kind for e in run.events].count("recovered") == 1


def test_sigkill_mid_compensation_resumes_the_unwinding(store_url, log):
    client = build(store_url, str(log))
    log.with_name(f"{log.name}.fail-charge").touch()
    marker = hang(log, "release")
    worker = WorkerProcess(store_url, log)
    try:
        run = client.start("checkout", "o2")
        wait_for(lambda: body_counts(log)[("release", "o2")] == 1, what="release to start")
        assert run.status == "compensating"
        worker.kill()
        marker.unlink()
        worker = WorkerProcess(store_url, log)
        with pytest.raises(SagaCompensated, match="card declined"):
            run.result(timeout=20)
    finally:
        worker.stop()
        client.close()
    counts = body_counts(log)
    assert counts[("reserve", "o2")] == 1
    assert counts[("charge", "o2")] == 1  # its failure was recorded: not tried again
    assert counts[("release", "o2")] == 2  # interrupted compensation: again
    assert counts[("ship", "o2")] == 0


def test_runs_of_a_worker_on_another_host_are_taken_over_when_its_lease_expires(make_app):
    app = make_app(lease=1.0)
    ran = []

    @app.step
    def work(x):
        ran.append(x)
        return x

    @app.saga()
    def saga_(ctx, x):
        return work(x)

    run = app.start(saga_, 1)
    now = time.time()
    claims = app.store.claim("elsewhere:4242:0:abcdef", 10, now, now + 1.0)
    assert [c.run.id for c in claims] == [run.id]
    with app:
        # Not dead as far as this host can tell: only the lease's expiry frees the run.
        time.sleep(0.5)
        assert run.status == "running" and ran == []
        assert run.result(timeout=10) == 1
    assert run.refresh().recoveries == 1


def test_a_worker_that_lost_its_lease_cannot_write(app):
    @app.saga()
    def saga_(ctx):
        return 1

    run = app.start(saga_)
    now = time.time()
    first = app.store.claim("a:1:0:x", 1, now, now - 1)[0]  # lease already expired
    second = app.store.claim("b:2:0:y", 1, now, now + 30)[0]
    assert second.run.epoch == first.run.epoch + 1
    late = Checkpoint(
        run.id,
        first.run.epoch,
        now,
        now + 30,
        entries=[JournalEntry(0, 0, "step", "x", "ok", None, "1", None, 1, now, now)],
    )
    with pytest.raises(LeaseLost, match="another worker took the run over"):
        app.store.checkpoint(late)
    assert app.store.journal(run.id) == []  # the late write left nothing behind


def test_several_worker_processes_on_one_store_never_run_a_run_twice(store_url, log):
    client = build(store_url, str(log))
    # Bodies take 10 ms, so that all three workers get a share of the runs.
    workers = [WorkerProcess(store_url, log, concurrency=8, step_seconds=0.01) for _ in range(3)]
    try:
        marker = hang(log, "reserve")
        runs = [client.start("checkout", f"m{i}") for i in range(150)]
        # 24 runs inside `reserve` at once: each of the 3 workers (8 slots) holds some.
        wait_for(
            lambda: sum(n for (name, _), n in body_counts(log).items() if name == "reserve") >= 24,
            what="every worker to hold runs",
        )
        marker.unlink()
        for run in runs:
            run.result(timeout=60)
    finally:
        outputs = [w.stop() for w in workers]
        client.close()
    counts = body_counts(log)
    for i in range(150):
        for step in ("reserve", "charge", "ship"):
            assert counts[(step, f"m{i}")] == 1, (step, i, outputs)
    pids = {line.split()[2] for line in log.read_text().splitlines()}
    assert len(pids) == 3  # the work was shared


def test_shutdown_hands_executing_runs_back(make_app):
    import threading

    first = make_app()
    entered, release = threading.Event(), threading.Event()
    log = []

    @first.step
    def slow():
        entered.set()
        release.wait(10)
        log.append("slow")

    @first.step
    def after():
        log.append("after")

    @first.saga()
    def saga_(ctx):
        slow()
        after()

    first.launch()
    run = first.start(saga_)
    assert entered.wait(10)
    stopper = threading.Thread(target=first.shutdown)
    stopper.start()
    time.sleep(0.1)
    release.set()
    stopper.join(10)
    record = run.refresh()
    assert record.owner is None and record.status == "running"  # handed back, due now
    assert log == ["slow"]
    with first:
        assert wait_status(run, "succeeded") == "succeeded"
    assert log == ["slow", "after"]  # slow's completion was kept


def test_a_paused_worker_that_comes_back_has_lost_the_run_and_writes_nothing(store_url, log):
    client = build(store_url, str(log))
    marker = hang(log, "charge")
    paused = WorkerProcess(store_url, log, lease=1.0)
    taker = None
    try:
        run = client.start("checkout", "p1")
        wait_for(lambda: body_counts(log)[("charge", "p1")] == 1, what="charge to start")
        paused.signal(signal.SIGSTOP)  # alive as far as this host can tell: only the lease ends
        taker = WorkerProcess(store_url, log, lease=1.0)
        wait_for(lambda: body_counts(log)[("charge", "p1")] == 2, what="the takeover")
        marker.unlink()
        assert run.result(timeout=20)["charge"] == "charge-p1"
        before = run.refresh()
        resumed_at = time.time()
        paused.signal(signal.SIGCONT)  # its charge body returns now; its write must fail
        time.sleep(1.5)
        after = run.refresh()
    finally:
        paused.signal(signal.SIGCONT)
        paused_output = paused.stop()
        if taker is not None:
            taker.stop()
        client.close()
    counts = body_counts(log)
    assert counts[("reserve", "p1")] == 1
    assert counts[("charge", "p1")] == 2  # once in each worker: its completion once
    assert counts[("ship", "p1")] == 1  # the paused worker did not go on
    assert after == before  # nothing written after it came back
    assert all(step.finished_at < resumed_at for step in run.steps)
    assert "lease lost" in paused_output
    assert after.recoveries == 1
