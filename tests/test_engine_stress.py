"""Three `sagaway worker` processes share 2,000 runs; one is SIGKILLed and one SIGSTOPped
(then SIGCONTed) mid-run. Every run must end, every step's completion be recorded once,
and no body of a recorded step run again."""

import collections
import json
import signal
import time

import pytest

from tests.apps.stress import STEPS, build
from tests.conftest import wait_for
from tests.processes import WorkerProcess

pytestmark = pytest.mark.slow

RUNS = 2000
CONCURRENCY = 16
LEASE = 2.0


def read_bodies(log):
    """(run id, position) -> [(pid, start time)] of every step body that started."""
    bodies = collections.defaultdict(list)
    for line in log.read_text().splitlines():
        run_id, position, pid, started = line.split()
        bodies[(run_id, int(position))].append((pid, started))
    return bodies


def test_workers_killed_and_paused_mid_run_lose_nothing_and_redo_nothing(store_url, tmp_path):
    log = tmp_path / "bodies.log"
    client = build(store_url, str(log))
    target = "tests.apps.stress:app"
    workers = [
        WorkerProcess(store_url, log, lease=LEASE, concurrency=CONCURRENCY, target=target)
        for _ in range(3)
    ]
    killed, paused = workers[0], workers[1]
    try:
        runs = [client.start("five", i) for i in range(RUNS)]

        def succeeded():
            return client.store.count_runs().get("succeeded", 0)

        wait_for(lambda: succeeded() >= RUNS // 5, 60, 0.02, "a fifth of the runs to end")
        killed.kill()
        wait_for(lambda: succeeded() >= 2 * RUNS // 5, 60, 0.02, "two fifths of the runs")
        paused.signal(signal.SIGSTOP)
        time.sleep(2 * LEASE)  # its leases expire; the third worker takes its runs over
        paused.signal(signal.SIGCONT)
        wait_for(lambda: succeeded() == RUNS, 90, 0.05, f"all {RUNS} runs to succeed")
    finally:
        paused.signal(signal.SIGCONT)
        outputs = [w.stop() for w in workers]
    try:
        assert client.store.count_runs() == {"succeeded": RUNS}
        bodies = read_bodies(log)
        reruns = 0
        for run in runs:
            entries = client.store.journal(run.id)
            # The journal's key is (run, phase, position): one row per step at most.
            assert [(e.phase, e.position, e.kind, e.status) for e in entries] == [
                (0, p, "step", "ok") for p in range(STEPS)
            ]
            for entry in entries:
                starts = bodies[(run.id, entry.position)]
                assert starts, f"run {run.id} step {entry.position} recorded but never ran"
                # No body started after the step's completion was recorded ...
                latest = max(starts, key=lambda s: float(s[1]))
                assert float(latest[1]) <= entry.finished_at, (run.id, entry, starts)
                # ... and the completion recorded is that of the last body to start: a late
                # write by a worker that had lost the run would have put an earlier one back.
                assert json.loads(entry.result) == " ".join(latest), (run.id, entry, starts)
                reruns += len(starts) - 1
        # Only bodies interrupted in the two stricken workers ran twice.
        assert reruns <= 2 * CONCURRENCY, reruns
        moved = collections.Counter(
            json.loads(e.data)["from"].split(":")[1] for e in client.store.events(kind="recovered")
        )
        assert moved[str(killed.process.pid)] > 0 and moved[str(paused.process.pid)] > 0, moved
        assert "lease lost" in outputs[1], outputs[1]
    finally:
        client.close()
