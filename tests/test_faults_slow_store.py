"""A slow store: the disk stalls a second at a time (commits wait, as behind a slow fsync)
under three worker processes. Heartbeats keep the leases: no run is taken over, none is
executed twice, every run ends."""

from __future__ import annotations

import time

import pytest

from tests.apps.stress import STEPS, build
from tests.processes import WorkerProcess, check_bodies, wait_handled
from tests.test_faults_postgres import CONCURRENCY, wait_progress

pytestmark = pytest.mark.slow

LEASE = 4.0  # a third of it outlasts a stall and a busy machine
STALL = "2.5 1.0"  # every 2.5 s, commits wait out a stall of 1 s


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=[
    pytest.mark.postgres, pytest.mark.xdist_group("own-postgres")])])  # fmt: skip
def test_commits_stalling_a_second_cause_no_false_takeover(backend, request, tmp_path):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/sagaway.db"
    else:
        url = request.getfixturevalue("own_postgres").url()
    log = tmp_path / "bodies.log"
    client = build(url, str(log))
    workers = [
        WorkerProcess(
            url,
            log,
            lease=LEASE,
            concurrency=CONCURRENCY,
            step_seconds=0.1,  # the runs span several stalls
            target="tests.apps.stress:app",
            env_extra={"SAGAWAY_TEST_STALL": STALL},
        )
        for _ in range(3)
    ]
    try:
        started = time.monotonic()
        runs = [client.start("five", i) for i in range(300)]
        wait_progress(client, len(runs), 120)
        seconds = time.monotonic() - started
        wait_handled(log, len(runs))
    finally:
        outputs = [w.stop() for w in workers]
    try:
        assert client.store.count_runs() == {"succeeded": len(runs)}
        assert client.store.events(kind="recovered") == []
        assert check_bodies(client.store, runs, log, STEPS) == 0  # no body ran twice
        for output in outputs:
            assert "Traceback" not in output and "lease lost" not in output, output
        print(f"{backend} with stalls: {len(runs)} runs in {seconds:.1f} s")
    finally:
        client.close()
