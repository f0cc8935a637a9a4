"""Faults of the database itself, on a PostgreSQL server of the tests' own: restarts (fast
and immediate) and connections killed under three worker processes running many sagas,
each of which publishes a message that a consumer group handles.

The invariants, after each fault: every run ends; each step's completion is recorded once;
no body of a recorded step runs again; every message is handled; workers say that they lost
the database, and that it is back, once per outage, not once per call.
"""

from __future__ import annotations

import random
import re
import threading
import time

import pytest

from sagaway import StoreUnavailable
from tests.apps.stress import STEPS, build
from tests.conftest import wait_for
from tests.processes import WorkerProcess, check_bodies, wait_handled

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("own-postgres")]

CONCURRENCY = 8
LEASE = 2.0


def start_workers(url, log, count=3, step_seconds=0.01, lease=LEASE, envs=None):
    """`count` worker processes of tests.apps.stress (with `envs[i]` added to the i-th's
    environment)."""
    envs = envs or [None] * count
    return [
        WorkerProcess(
            url,
            log,
            lease=lease,
            concurrency=CONCURRENCY,
            step_seconds=step_seconds,
            target="tests.apps.stress:app",
            env_extra=env,
        )
        for env in envs
    ]


def shop(server, tmp_path):
    """A fresh schema on `server`: its URL, the body log and a client App."""
    url = server.url()
    log = tmp_path / "bodies.log"
    return url, log, build(url, str(log))


def succeeded(client) -> int:
    """How many runs succeeded (0 while the database is away)."""
    try:
        return client.store.count_runs().get("succeeded", 0)
    except StoreUnavailable:
        return 0


def wait_until_done(client, runs: int, timeout: float) -> float:
    """Wait until `runs` runs succeeded; return when the last did (monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        done = succeeded(client)
        if done >= runs:
            return time.monotonic()
        assert time.monotonic() < deadline, f"only {done} of {runs} runs ended"
        time.sleep(0.1)


def wait_progress(client, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while succeeded(client) < at_least:
        assert time.monotonic() < deadline, "the workers made no progress"
        time.sleep(0.05)


def check_outages_logged_once(output: str, outages: int) -> None:
    """The worker said once per outage that the database was lost and once that it came
    back, and logged no other warning (but lost leases, one per run taken over)."""
    lines = output.splitlines()
    warnings = [line for line in lines if re.search(r" (WARNING|ERROR) |Traceback", line)]
    lost = [line for line in warnings if "lost the database" in line]
    back = [line for line in warnings if "is back after" in line]
    others = [line for line in warnings if line not in lost + back and "lease lost" not in line]
    assert 1 <= len(lost) <= outages, "\n".join(lost)
    assert len(back) == len(lost), "\n".join(back)
    assert not others, "\n".join(others)


def test_postgres_restarted_twice_under_three_workers_loses_and_redoes_nothing(
    own_postgres, tmp_path
):
    runs_total = 2000
    # A pool_timeout below the second outage: calls fail and are retried by the engine.
    url = own_postgres.url(pool_timeout="2")
    log = tmp_path / "bodies.log"
    client = build(url, str(log))
    workers = start_workers(url, log)
    try:
        runs = [client.start("five", i) for i in range(runs_total)]
        wait_progress(client, runs_total // 4)
        down = time.monotonic()
        own_postgres.restart("fast", down=1.0)
        wait_progress(client, runs_total // 2)
        own_postgres.restart("immediate", down=4.0)
        wait_until_done(client, runs_total, 180)
        recovery = time.monotonic() - down
        handled = wait_handled(log, runs_total)  # no message lost
    finally:
        outputs = [w.stop() for w in workers]
    try:
        assert client.store.count_runs() == {"succeeded": runs_total}
        reruns = check_bodies(client.store, runs, log, STEPS)
        # Only bodies in flight during an outage may run again: at most the workers' slots,
        # twice.
        assert reruns <= 2 * 3 * CONCURRENCY, reruns
        for output in outputs:
            check_outages_logged_once(output, outages=2)
        again = sum(handled.values()) - len(handled)
        print(f"restarts: reruns={reruns} handled again={again} done {recovery:.1f} s after")
    finally:
        client.close()


def test_connections_killed_every_few_hundred_ms_lose_and_redo_nothing(own_postgres, tmp_path):
    runs_total = 2000
    url, log, client = shop(own_postgres, tmp_path)
    workers = start_workers(url, log, step_seconds=0.02)
    # A worker in this process, under a name of its own: its LISTEN connection is killed
    # again and again, and wake-ups must still reach it afterwards.
    probe = build(f"{url}&application_name=sagaway-probe", str(log))
    probe.launch(concurrency=4)
    stop = threading.Event()
    killed: list[str] = []

    def kill_connections() -> None:
        rng = random.Random(16)
        while not stop.wait(rng.uniform(0.2, 0.4)):
            backends = own_postgres.backends() + own_postgres.backends("sagaway-probe")
            listening = [b for b in backends if b[1].startswith("LISTEN")]
            for pid, query in [rng.choice(backends), *listening[: rng.randrange(2)]]:
                if own_postgres.terminate(pid):
                    killed.append(query)

    killer = threading.Thread(target=kill_connections, daemon=True)
    try:
        runs = [client.start("five", i) for i in range(runs_total)]
        killer.start()
        wait_until_done(client, runs_total, 180)
        wait_handled(log, runs_total)  # no message lost
    finally:
        stop.set()
        killer.join()
        outputs = [w.stop() for w in workers]
    try:
        assert client.store.count_runs() == {"succeeded": runs_total}
        check_bodies(client.store, runs, log, STEPS)
        assert sum(q.startswith("LISTEN") for q in killed) >= 3, killed
        for output in outputs:
            assert "Traceback" not in output, output
        listener = probe.store._listener
        wait_for(listener.connected.is_set, 10, what="the LISTEN connection to come back")
        before = listener.notifications
        client.start("five", -1)  # a pending run: the start NOTIFYs every worker
        wait_for(lambda: listener.notifications > before, 10, what="a wake-up after the kills")
        print(f"kills: {len(killed)}")
    finally:
        probe.close()
        client.close()
