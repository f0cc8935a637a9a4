"""Network faults between workers and PostgreSQL: each worker reaches the tests' own server
through a TCP proxy of its own (tests/faultproxy.py) that can black-hole, reset and delay.

A partitioned worker loses its leases: the others take its runs over and it is fenced off
(its writes, delivered when the partition heals, are refused). Added latency slows the
workers down and loses nothing.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.apps.stress import STEPS
from tests.faultproxy import FaultProxy
from tests.processes import WorkerProcess, check_bodies, wait_handled
from tests.test_faults_postgres import CONCURRENCY, LEASE, shop, succeeded, wait_progress

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("own-postgres")]


def worker_through(proxy: FaultProxy, url: str, log, step_seconds: float) -> WorkerProcess:
    proxied = url.replace(f":{proxy.target_port}/", f":{proxy.port}/")
    return WorkerProcess(
        proxied,
        log,
        lease=LEASE,
        concurrency=CONCURRENCY,
        step_seconds=step_seconds,
        target="tests.apps.stress:app",
    )


def taken_from(client, worker: WorkerProcess) -> int:
    """How many runs other workers took over from `worker`."""
    return sum(
        json.loads(e.data)["from"].split(":")[1] == str(worker.process.pid)
        for e in client.store.events(kind="recovered")
    )


def test_partitioned_worker_loses_its_leases_and_writes_nothing_stale_on_heal(
    own_postgres, tmp_path
):
    runs_total = 400
    url, log, client = shop(own_postgres, tmp_path)
    proxy = FaultProxy(own_postgres.port)
    others = [worker_through(FaultProxy(own_postgres.port), url, log, 0.02) for _ in range(2)]
    cut = worker_through(proxy, url, log, 0.02)
    try:
        runs = [client.start("five", i) for i in range(runs_total)]
        wait_progress(client, runs_total // 5)
        proxy.blackhole()  # nothing in or out; what it sends now arrives after the heal
        time.sleep(3 * LEASE)
        partitioned_progress = succeeded(client)
        proxy.heal()
        time.sleep(1.0)
        proxy.reset()  # then its connections are reset, and new ones too, for a while
        time.sleep(1.0)
        proxy.heal()
        deadline = time.monotonic() + 120
        while succeeded(client) < runs_total:
            assert time.monotonic() < deadline, f"only {succeeded(client)} runs ended"
            time.sleep(0.1)
        wait_handled(log, runs_total)  # no message lost
    finally:
        proxy.heal()
        outputs = [w.stop() for w in [*others, cut]]
    try:
        assert client.store.count_runs() == {"succeeded": runs_total}
        # The writes it sent into the partition were fenced: no completion it recorded late
        # replaced a later body's, and no body ran after its step's completion was recorded.
        check_bodies(client.store, runs, log, STEPS)
        assert taken_from(client, cut) > 0
        assert "lease lost" in outputs[2], outputs[2]
        assert partitioned_progress > runs_total // 5  # the others went on meanwhile
    finally:
        client.close()


def test_fifty_ms_more_per_round_trip_completes_everything(own_postgres, tmp_path):
    runs_total = 60
    url, log, client = shop(own_postgres, tmp_path)
    proxies = [FaultProxy(own_postgres.port) for _ in range(3)]
    for proxy in proxies:
        proxy.delay(0.050)
    workers = [worker_through(proxy, url, log, 0.005) for proxy in proxies]
    try:
        started = time.monotonic()
        runs = [client.start("five", i) for i in range(runs_total)]
        deadline = started + 120
        while succeeded(client) < runs_total:
            assert time.monotonic() < deadline, f"only {succeeded(client)} runs ended"
            time.sleep(0.05)
        seconds = time.monotonic() - started
    finally:
        outputs = [w.stop() for w in workers]
    try:
        assert client.store.count_runs() == {"succeeded": runs_total}
        check_bodies(client.store, runs, log, STEPS)
        for output in outputs:
            assert "Traceback" not in output, output
        print(f"latency 50 ms: {runs_total} runs in {seconds:.1f} s")
    finally:
        client.close()
