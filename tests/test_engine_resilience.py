"""Resilience primitives as step options: runs park while a breaker is open or a rate limit
is exhausted, instead of burning retries or failing the order; a deadline bounds parking."""

import json
import subprocess
import sys
import threading
import time

import pytest

from sagaway import Retry, SagaCompensated
from sagaway.resilience import (
    BreakerOpen,
    Bulkhead,
    CircuitBreaker,
    RateLimiter,
)
from tests.conftest import wait_for
from tests.processes import ROOT


class Provider:
    """A payment provider that is down until `up()`."""

    def __init__(self):
        self.down = True
        self.calls = 0
        self.lock = threading.Lock()

    def charge(self):
        with self.lock:
            self.calls += 1
        if self.down:
            raise ConnectionError("503 from the provider")
        return "charged"


def checkout_app(make_app, provider, deadline=None, open_for=1.5):
    app = make_app()
    breaker = CircuitBreaker(
        "payments", failure_rate=0.5, min_calls=2, window=4, open_for=open_for, half_open_calls=1
    )
    released = []

    @app.step
    def reserve(order):
        return order

    @reserve.compensation
    def release(order):
        released.append(order)

    @app.step(breaker=breaker, deadline=deadline, retry=Retry(attempts=3, base=0.001))
    def charge(order):
        return provider.charge()

    @app.saga()
    def checkout(ctx, order):
        reserve(order)
        return charge(order)

    return app, checkout, breaker, released


def test_runs_park_while_the_breaker_is_open_and_complete_once_it_closes(make_app):
    provider = Provider()
    app, checkout, breaker, released = checkout_app(make_app, provider)
    with app:
        first = app.start(checkout, "o0")  # its 2 failed tries open the breaker; it parks
        wait_for(lambda: breaker.state == "open", what="the breaker to open")
        runs = [app.start(checkout, f"o{i}") for i in range(1, 6)]
        wait_for(lambda: all(r.status == "waiting" for r in [first, *runs]), what="parking")
        calls_while_open = provider.calls
        time.sleep(0.3)
        assert provider.calls == calls_while_open  # parked runs do not hammer the provider
        provider.down = False
        results = [r.result(timeout=20) for r in [first, *runs]]
    assert results == ["charged"] * 6
    assert released == []  # the outage did not turn into failed orders
    assert any(e.kind == "parked" for e in runs[0].events)
    attempts = {s.name: s.attempts for s in runs[0].steps}
    assert attempts["charge"] == 1  # parking spent no try


def test_with_a_short_deadline_parked_runs_compensate(make_app):
    provider = Provider()
    app, checkout, breaker, released = checkout_app(make_app, provider, deadline=0.5, open_for=30)
    with app:
        first = app.start(checkout, "o0")
        wait_for(lambda: breaker.state == "open", what="the breaker to open")
        late = app.start(checkout, "o1")
        with pytest.raises(SagaCompensated) as caught:
            late.result(timeout=10)
        with pytest.raises(SagaCompensated):
            first.result(timeout=10)
    assert isinstance(caught.value.error, BreakerOpen)
    assert sorted(released) == ["o0", "o1"]


def test_a_long_park_rests_the_run_durably_and_keeps_its_deadline(make_app):
    provider = Provider()
    app, checkout, breaker, _ = checkout_app(make_app, provider, deadline=60, open_for=2.5)
    with app:
        first = app.start(checkout, "o0")
        wait_for(lambda: breaker.state == "open", what="the breaker to open")
        run = app.start(checkout, "o1")
        wait_for(lambda: run.refresh().wait_name == "park:charge", what="a durable park")
        record = run.refresh()
        assert record.owner is None and record.status == "waiting"
        assert record.due_at - time.time() < 3  # wakes when the breaker admits a trial
        assert record.wait_deadline - record.created_at == pytest.approx(60, abs=2)
        provider.down = False
        assert run.result(timeout=20) == "charged"
        assert first.result(timeout=20) == "charged"


def test_an_exhausted_rate_limit_parks_instead_of_failing(make_app):
    app = make_app()
    limiter = RateLimiter("psp", rate=5, per=1.0, burst=2)
    stamps = []

    @app.step(rate_limit=limiter, retry=Retry(attempts=1))
    def call():
        stamps.append(time.monotonic())

    @app.saga()
    def saga_(ctx):
        call()

    with app:
        runs = [app.start(saga_) for _ in range(8)]
        for run in runs:
            run.result(timeout=20)
    stamps.sort()
    span = stamps[-1] - stamps[0]
    assert span >= (8 - 2) / 5 * 0.9  # 2 at once, then 5 a second
    assert all(any(e.kind == "parked" for e in r.events) for r in runs[3:])


def test_a_bulkhead_bounds_concurrent_step_bodies(make_app):
    app = make_app(concurrency=16)
    bulkhead = Bulkhead("ledger", max_concurrent=3)
    inside, peak, lock = [0], [0], threading.Lock()

    @app.step(bulkhead=bulkhead)
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


def test_a_refusal_raised_inside_the_step_parks_too(make_app):
    app = make_app()
    inner = CircuitBreaker("inner", min_calls=1, window=1, open_for=0.4, half_open_calls=1)
    calls = []

    @app.step(retry=Retry(attempts=1))
    def call():
        calls.append(1)
        if len(calls) == 1:  # the provider fails now: the breaker is open for 0.4 s
            with pytest.raises(ZeroDivisionError):
                inner.call(lambda: 1 / 0)
        return inner.call(lambda: "ok")

    @app.saga()
    def saga_(ctx):
        return call()

    with app:
        run = app.start(saga_)
        assert run.result(timeout=10) == "ok"
    assert any(e.kind == "parked" for e in run.events)
    assert len(calls) >= 2 and run.steps[0].attempts == 1


def test_a_shared_breaker_opens_for_every_app_on_the_store(make_app):
    one, two = make_app(), make_app()
    a = CircuitBreaker("psp", min_calls=2, window=2, open_for=30, shared=one.shared_breakers,
                       shared_ttl=0)  # fmt: skip
    b = CircuitBreaker("psp", min_calls=2, window=2, open_for=30, shared=two.shared_breakers,
                       shared_ttl=0)  # fmt: skip
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            a.call(lambda: 1 / 0)
    assert a.state == "open"
    with pytest.raises(BreakerOpen):
        b.call(lambda: "never")
    stored = json.dumps(one.store.read_shared("breaker", "psp"))
    assert "open" in stored


def test_a_shared_rate_limit_holds_across_processes(store_url, tmp_path):
    # Each process opens its store and says so; the test then hands both the same end of a
    # one-second window, so however long the imports took (seconds on a loaded machine), both
    # take tokens during the same second.
    script = (
        "import sys, time\n"
        "from sagaway import App\n"
        "from sagaway.resilience import RateLimiter\n"
        "app = App(sys.argv[1])\n"
        "app.store\n"
        "limiter = RateLimiter('quota', rate=10, per=1.0, burst=5, "
        "state=app.shared_rate_limits)\n"
        "print('ready', flush=True)\n"
        "stop = float(sys.stdin.readline())\n"
        "taken = 0\n"
        "while time.time() < stop:\n"
        "    if limiter.try_acquire() == 0.0:\n"
        "        taken += 1\n"
        "print(taken)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, store_url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    stop = f"{time.time() + 1.0}\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(stop)
        p.stdin.flush()
    taken = [int(p.communicate(timeout=60)[0]) for p in procs]
    # One bucket for both: its burst plus a second of refill (5 + 10, and a token of
    # slack for timing), where two private buckets would allow about twice as much.
    assert 5 <= sum(taken) <= 16
