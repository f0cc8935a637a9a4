"""An AdaptiveLimit as a step's bulkhead: it bounds the step's bodies, learns each try's
outcome (a timed-out try is a drop), and a full limit parks the run instead of spending a try."""

from __future__ import annotations

import threading
import time

from sagaway import Retry, SagaCompensated
from sagaway.resilience import AdaptiveLimit, Bulkhead


def test_an_adaptive_limit_bounds_concurrent_step_bodies_and_learns_their_latency(make_app):
    app = make_app(concurrency=16)
    limit = AdaptiveLimit("aimd", initial=3, max_limit=3, name="ledger")
    inside, peak, lock = [0], [0], threading.Lock()

    @app.step(bulkhead=limit)
    def post():
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1

    @app.saga()
    def saga_(ctx):
        post()

    with app:
        runs = [app.start(saga_) for _ in range(20)]
        for run in runs:
            run.result(timeout=20)
    assert peak[0] == 3
    assert limit.in_flight == 0
    assert limit.stats()["latency"] >= 0.02  # every try reported its latency
    assert limit.dropped == 0
    refused = [e for run in runs for e in app.get(run.id).events if e.kind == "parked"]
    assert all("LimitExceeded" in e.data for e in refused)  # a full limit parks the run


def test_a_timed_out_try_is_a_drop_and_a_failed_one_a_sample(make_app):
    app = make_app()
    limit = AdaptiveLimit("aimd", initial=8, name="payments")
    tries = []

    @app.step(bulkhead=limit, timeout=0.05, retry=Retry(attempts=2, base=0.001))
    def charge():
        tries.append(1)
        if len(tries) == 1:
            time.sleep(0.3)  # the provider hangs: the try times out
        raise ValueError("card declined")  # the provider answered: not overload

    @app.saga()
    def saga_(ctx):
        charge()

    with app:
        run = app.start(saga_)
        try:
            run.result(timeout=20)
        except SagaCompensated:
            pass
    assert len(tries) == 2
    assert limit.dropped == 1  # the timeout; the declined card is a success sample
    assert limit.limit == 4
    assert limit.in_flight == 0


def test_a_bulkhead_slot_is_not_held_through_a_retry_backoff(make_app):
    app = make_app(concurrency=4)
    bulkhead = Bulkhead("ledger", max_concurrent=1)
    attempts: list[str] = []
    times: list[float] = []

    @app.step(bulkhead=bulkhead, retry=Retry(attempts=2, base=0.8, jitter="none"))
    def post(name):
        attempts.append(name)
        times.append(time.monotonic())
        if name == "slow" and attempts.count("slow") == 1:
            raise ConnectionError("try again")

    @app.saga()
    def saga_(ctx, name):
        post(name)

    with app:
        slow = app.start(saga_, "slow")
        deadline = time.monotonic() + 10
        while "slow" not in attempts and time.monotonic() < deadline:
            time.sleep(0.005)
        fast = app.start(saga_, "fast")  # starts while "slow" waits 0.8 s for its retry
        fast.result(timeout=20)
        slow.result(timeout=20)
    assert attempts == ["slow", "fast", "slow"]
    assert times[1] - times[0] < 0.7  # "fast" ran during the backoff, not after it
    assert times[2] - times[0] >= 0.8
    assert bulkhead.in_use == 0
