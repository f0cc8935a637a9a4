"""Three `sagaway worker` processes share 2,000 runs; one is SIGKILLed and one SIGSTOPped
(then SIGCONTed) mid-run. Every run must end, every step's completion be recorded once,
and no body of a recorded step run again."""

import json
import signal
import time

import pytest

from tests.apps.stress import STEPS, build
from tests.conftest import wait_for
from tests.processes import WorkerProcess, check_bodies

pytestmark = pytest.mark.slow

RUNS = 2000
CONCURRENCY = 16
LEASE = 2.0


def hold(log, worker):
    """Make the worker's bodies of later steps wait; return how many wait, as a function."""
    marker = log.with_name(f"{log.name}.hold-{worker.process.pid}")
    waiting = marker.with_name(f"{marker.name}.waiting")
    marker.touch()
    return lambda: len(waiting.read_text().splitlines()) if waiting.exists() else 0


def release(log, worker):
    log.with_name(f"{log.name}.hold-{worker.process.pid}").unlink()


def test_workers_killed_and_paused_mid_run_lose_nothing_and_redo_nothing(store_url, tmp_path):
    log = tmp_path / "bodies.log"
    client = build(store_url, str(log))

    def taken_from(worker):
        """How many runs other workers took over from `worker` (by its pid)."""
        return sum(
            json.loads(e.data)["from"].split(":")[1] == str(worker.process.pid)
            for e in client.store.events(kind="recovered")
        )

    target = "tests.apps.stress:app"
    workers = [
        WorkerProcess(store_url, log, lease=LEASE, concurrency=CONCURRENCY, target=target)
        for _ in range(3)
    ]
    killed, paused = workers[0], workers[1]

    def succeeded():
        return client.store.count_runs().get("succeeded", 0)

    try:
        # Two workers' runs stop inside their third step, so that they are surely in flight
        # (and in no transaction: a process stopped holding SQLite's write lock, or row
        # locks, would hold the others up) when one is killed and the other stopped.
        waiting = [hold(log, killed), hold(log, paused)]
        runs = [client.start("five", i) for i in range(RUNS)]
        for count in waiting:
            wait_for(lambda c=count: c() >= CONCURRENCY // 2, 60, 0.02, "runs waiting in a worker")
        time.sleep(0.2)
        killed.kill()
        release(log, killed)
        paused.signal(signal.SIGSTOP)
        # Every run ends while it sleeps (its bodies stay held): the runs it held must be
        # taken over. Had it stopped inside a transaction (a heartbeat, say), holding
        # SQLite's write lock, the others would stall: let it finish that and stop it again.
        done, progress, since = 0, 0, time.monotonic()
        deadline = since + 90
        while done < RUNS:
            assert time.monotonic() < deadline, f"only {done} of {RUNS} runs ended"
            time.sleep(0.05)
            done = succeeded()
            if done > progress:
                progress, since = done, time.monotonic()
            elif time.monotonic() - since > 3 * LEASE:
                paused.signal(signal.SIGCONT)
                time.sleep(0.2)
                paused.signal(signal.SIGSTOP)
                since = time.monotonic()
        release(log, paused)
        paused.signal(signal.SIGCONT)  # its bodies return now: their completions are late
        time.sleep(1.0)
    finally:
        paused.signal(signal.SIGCONT)
        outputs = [w.stop() for w in workers]
    try:
        assert client.store.count_runs() == {"succeeded": RUNS}
        reruns = check_bodies(client.store, runs, log, STEPS)
        # Only bodies interrupted in the two stricken workers ran twice.
        assert reruns <= 2 * CONCURRENCY, reruns
        assert taken_from(killed) > 0 and taken_from(paused) > 0
        assert "lease lost" in outputs[1], outputs[1]
    finally:
        client.close()
