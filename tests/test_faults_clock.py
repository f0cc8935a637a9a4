"""Clock jumps: the wall clock steps an hour forward and back under three worker processes.

Each worker's wall clock (`sagaway._clock.wall`) follows an offset file (tests/apps/stress.py).
On SQLite the store's clock is the host's: every process steps together, as a host's clock
does. On PostgreSQL the store's clock is the server's: one worker's host steps forward, one
back, and nothing may change. Either way no run is executed by two workers at once, no run
is taken over (no worker died), every run ends, and timers fire within their bound.
"""

from __future__ import annotations

import collections
import itertools
import time
from pathlib import Path

import pytest

from sagaway import _clock
from sagaway.engine.run import Run
from tests.apps.stress import STEPS, build
from tests.conftest import wait_status
from tests.processes import WorkerProcess, check_bodies, wait_handled
from tests.test_faults_postgres import start_workers, wait_progress

pytestmark = pytest.mark.slow

HOUR = 3600.0
# Long enough that a heartbeat late on a busy machine takes no lease away: the test asserts
# that no run is taken over at all.
LEASE = 5.0
NAP = 1.5
# A timer fires at most this long after it is due, on an idle worker (poll_interval 0.1 s,
# a claim, a replay), with room for a busy machine.
TIMER_BOUND = 3.0


def bodies(log: Path) -> dict[str, list[tuple[float, float, str, int]]]:
    """run id -> [(start, end, pid, position)] of every step body that returned."""
    found: dict[str, list[tuple[float, float, str, int]]] = collections.defaultdict(list)
    for line in Path(f"{log}.ends").read_text().splitlines():
        run_id, position, pid, start, end = line.split()
        found[run_id].append((float(start), float(end), pid, int(position)))
    return found


def check_no_run_executed_twice_at_once(log: Path) -> None:
    for run_id, spans in bodies(log).items():
        spans.sort()
        for before, after in itertools.pairwise(spans):
            assert after[0] >= before[1], f"run {run_id}: bodies overlap: {before} {after}"


def check_timers(client, naps: list[Run], log: Path) -> list[float]:
    """Every nap's second step started NAP to NAP + TIMER_BOUND (real) seconds after its
    first step ended; return how late each timer fired."""
    spans = bodies(log)
    lateness = []
    for run in naps:
        first, second = sorted(spans[run.id], key=lambda s: s[3])[-2:]
        late = second[0] - first[1] - NAP
        assert -0.05 <= late <= TIMER_BOUND, (run.id, first, second)
        lateness.append(late)
    return lateness


def workers_following(url, log, clocks: list[Path | None]) -> list[WorkerProcess]:
    """Three workers, the i-th's wall clock following the offset file `clocks[i]`."""
    envs = [{"SAGAWAY_TEST_CLOCK": str(clock)} if clock else None for clock in clocks]
    return start_workers(url, log, step_seconds=0.05, lease=LEASE, envs=envs)


def check_clean(client, runs: list[Run], log: Path, total: int, same_clock: bool) -> None:
    """Every run succeeded; none was executed by two workers at once or taken over."""
    assert client.store.count_runs() == {"succeeded": total}
    check_no_run_executed_twice_at_once(log)
    assert client.store.events(kind="recovered") == []  # no lease was taken over
    check_bodies(client.store, runs, log, STEPS, same_clock=same_clock)


def test_host_clock_stepping_an_hour_either_way_runs_nothing_twice_at_once(tmp_path, monkeypatch):
    clock = tmp_path / "clock"
    clock.write_text("0")
    offset = [0.0]
    monkeypatch.setattr(_clock, "wall", lambda: time.time() + offset[0])

    def step_to(seconds: float) -> None:  # this process and the workers, together
        offset[0] = seconds
        clock.write_text(str(seconds))

    url = f"sqlite:///{tmp_path}/sagaway.db"
    log = tmp_path / "bodies.log"
    client = build(url, str(log))
    workers = workers_following(url, log, [clock] * 3)
    try:
        # Timers of 600 s, asleep before the step that passes them.
        passed = [client.start("nap", i, 600.0) for i in range(5)]
        for nap in passed:
            wait_status(nap, "waiting", timeout=60)
        runs = [client.start("five", i) for i in range(600)]
        wait_progress(client, 100)
        step_to(HOUR)  # forward: every lease looks expired; the 600 s timers are passed
        for nap in passed:  # they fire (behind the backlog of runs due before them)
            wait_status(nap, "succeeded", timeout=60)
        runs += [client.start("five", 1000 + i) for i in range(50)]
        step_to(0.0)  # back: the runs just started are due an hour ahead of the clock
        time.sleep(2.0)
        step_to(-HOUR)
        time.sleep(2.0)
        step_to(0.0)
        wait_progress(client, len(runs) + len(passed), 120)
        # Timers on idle workers (a backlog delays every due run alike).
        on_time = [client.start("nap", i, NAP) for i in range(10)]
        total = len(runs) + len(on_time) + len(passed)
        wait_progress(client, total, 30)
        wait_handled(log, len(runs))  # each `five` run published one message
    finally:
        outputs = [w.stop() for w in workers]
    try:
        check_clean(client, runs, log, total, same_clock=False)
        check_timers(client, on_time, log)
        for output in outputs:
            assert "Traceback" not in output, output
            assert "clock stepped forward by 3600.0 s" in output, output
            assert "clock stepped back by 3600.0 s" in output, output
    finally:
        client.close()


@pytest.mark.xdist_group("own-postgres")
def test_worker_hosts_stepping_an_hour_change_nothing_on_postgres(own_postgres, tmp_path):
    ahead, behind = tmp_path / "ahead", tmp_path / "behind"
    ahead.write_text("0")
    behind.write_text("0")
    url = own_postgres.url()
    log = tmp_path / "bodies.log"
    client = build(url, str(log))
    workers = workers_following(url, log, [ahead, behind, None])
    try:
        runs = [client.start("five", i) for i in range(600)]
        wait_progress(client, 100)
        ahead.write_text(str(HOUR))
        behind.write_text(str(-HOUR))
        wait_progress(client, len(runs), 120)
        naps = [client.start("nap", i, NAP) for i in range(20)]
        total = len(runs) + len(naps)
        wait_progress(client, total, 30)
        wait_handled(log, len(runs))
    finally:
        outputs = [w.stop() for w in workers]
    try:
        check_clean(client, runs, log, total, same_clock=True)
        lateness = check_timers(client, naps, log)
        for output in outputs:
            assert "Traceback" not in output and "clock stepped" not in output, output
        print(f"timers late by at most {max(lateness):.2f} s")
    finally:
        client.close()
