"""Fan-outs survive the death of their worker: real processes killed by SIGKILL mid-map."""

import collections

import pytest

from tests.apps.fanout import build
from tests.conftest import postgres_schema, wait_for
from tests.processes import WorkerProcess, body_counts

pytestmark = pytest.mark.slow

TARGET = "tests.apps.fanout:app"


@pytest.fixture
def log(tmp_path):
    return tmp_path / "bodies.log"


def hang(log, item):
    marker = log.with_name(f"{log.name}.hang-sync-{item}")
    marker.touch()
    return marker


def recorded_branches(run):
    lines = [s for s in run.steps if s.kind == "map"]
    return {b.index for b in lines[0].branches} if lines else set()


def kill_mid_map(store_url, log, saga, finished, what):
    """Start `saga` over six items, three at once, item 4 hanging; once `finished(client,
    run)`, SIGKILL the worker and start another. Returns (run id, result, children)."""
    client = build(store_url, str(log))
    marker = hang(log, 4)
    worker = WorkerProcess(store_url, log, target=TARGET)
    try:
        run = client.start(saga, 6, 3)
        wait_for(lambda: finished(client, run), timeout=30, what=what)
        worker.kill()
        marker.unlink()
        worker = WorkerProcess(store_url, log, target=TARGET)
        return run.id, run.result(timeout=30), client.children(run.id)
    finally:
        worker.stop()
        client.close()


def ran_once_but_the_interrupted_item(log):
    counts = body_counts(log)
    return {item: counts[("sync", str(item))] for item in range(6)} == {
        0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 5: 1,
    }  # fmt: skip


def test_sigkill_mid_map_of_steps_does_not_rerun_finished_branches(store_url, log):
    run_id, result, _ = kill_mid_map(
        store_url, log, "batch", lambda client, run: recorded_branches(run) == {0, 1, 2, 3, 5},
        "every branch but the hanging one recorded",
    )  # fmt: skip
    assert result == [0, 10, 20, 30, 40, 50]
    assert ran_once_but_the_interrupted_item(log)
    keys = [line.split()[3] for line in log.read_text().splitlines() if line.startswith("sync 4 ")]
    assert keys == [f"{run_id}/0.4"] * 2  # the interrupted branch: again, under its own key


def test_sigkill_mid_map_of_child_sagas_does_not_rerun_finished_children(store_url, log):
    def five_succeeded(client, run):
        return [c.status for c in client.children(run.id)].count("succeeded") == 5

    _, result, children = kill_mid_map(
        store_url, log, "fleet", five_succeeded, "every child but the hanging one to succeed"
    )
    assert result == [0, 10, 20, 30, 40, 50]
    assert ran_once_but_the_interrupted_item(log)
    assert [c.status for c in children] == ["succeeded"] * 6


@pytest.mark.postgres
def test_children_spread_over_three_workers_survive_one_of_them_killed(log):
    with postgres_schema() as url:
        client = build(url, str(log))
        workers = [
            WorkerProcess(url, log, target=TARGET, concurrency=4, step_seconds=0.2)
            for _ in range(3)
        ]
        try:
            run = client.start("fleet", 30)
            wait_for(
                lambda: [c.status for c in client.children(run.id)].count("succeeded") >= 8,
                timeout=60,
                what="some children to succeed",
            )
            pids = collections.Counter(line.split()[2] for line in log.read_text().splitlines())
            busiest = max(workers, key=lambda w: pids[str(w.process.pid)])
            busiest.kill()
            assert run.result(timeout=90) == [i * 10 for i in range(30)]
        finally:
            for worker in workers:
                worker.stop()
            client.close()
        reader = build(url, str(log))  # the client is closed: read through a new App
        try:
            children = [c.status for c in reader.children(run.id)]
        finally:
            reader.close()
    assert children == ["succeeded"] * 30
    counts = body_counts(log)
    assert all(counts[("sync", str(i))] >= 1 for i in range(30))
    ran_in = {line.split()[2] for line in log.read_text().splitlines()}
    assert len(ran_in) >= 2  # the killed worker's share, and the others'
