"""RateLimiter: token refill with an injectable clock, bounded waits, sync and async."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sagaway.resilience import ManualClock, RateLimited, RateLimiter


def test_bucket_starts_full_and_refills_at_the_rate():
    clock = ManualClock()
    limiter = RateLimiter("payments", rate=2, per=1.0, clock=clock)
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == pytest.approx(0.5)
    clock.advance(0.25)
    assert limiter.try_acquire() == pytest.approx(0.25)  # the refusals took nothing
    clock.advance(0.25)
    assert limiter.try_acquire() == 0.0
    assert limiter.try_acquire() == pytest.approx(0.5)


def test_refill_never_exceeds_burst():
    clock = ManualClock()
    limiter = RateLimiter("payments", rate=1, per=1.0, burst=3, clock=clock)
    clock.advance(3600)
    assert [limiter.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire() == pytest.approx(1.0)


def test_quota_per_minute():
    clock = ManualClock()
    limiter = RateLimiter("mail", rate=3, per=60.0, clock=clock)
    assert [limiter.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire() == pytest.approx(20.0)


def test_several_tokens_at_once():
    clock = ManualClock()
    limiter = RateLimiter("batch", rate=10, per=1.0, clock=clock)
    assert limiter.try_acquire(tokens=8) == 0.0
    assert limiter.try_acquire(tokens=4) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="at most burst=10"):
        limiter.try_acquire(tokens=11)


def test_refused_call_raises_rate_limited_with_retry_after_without_calling():
    clock = ManualClock()
    limiter = RateLimiter("payments", rate=1, per=2.0, clock=clock)
    called = []
    limiter.call(called.append, 1)
    with pytest.raises(RateLimited) as refused:
        limiter.call(called.append, 2)
    assert called == [1]
    assert refused.value.retry_after == pytest.approx(2.0)
    assert refused.value.tokens == 1
    assert "due in 2.000s" in str(refused.value)
    assert limiter.rejected == 1


def test_acquire_waits_when_the_token_is_due_within_max_wait():
    limiter = RateLimiter("payments", rate=50, per=1.0, burst=1, max_wait=0.5)
    limiter.acquire()
    started = time.monotonic()
    limiter.acquire()  # due in 20 ms
    assert 0.015 <= time.monotonic() - started < 0.5


def test_acquire_refuses_at_once_when_the_wait_would_exceed_timeout():
    limiter = RateLimiter("payments", rate=1, per=10.0, max_wait=5.0)
    limiter.acquire()
    started = time.monotonic()
    with pytest.raises(RateLimited) as refused:
        limiter.acquire()
    assert time.monotonic() - started < 1.0  # did not sleep the 10 s
    assert refused.value.retry_after == pytest.approx(10.0, abs=0.1)
    assert limiter.try_acquire() > 9.0  # the refusal reserved nothing


def test_waiting_threads_are_served_in_turn_at_the_rate():
    limiter = RateLimiter("payments", rate=100, per=1.0, burst=1, max_wait=2.0)
    done = []
    barrier = threading.Barrier(10)

    def worker() -> None:
        barrier.wait()
        limiter.acquire()
        done.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(10)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(done) == 10
    assert max(done) - started >= 0.085  # 1 at once, 9 more at 10 ms each


def test_async_wait_does_not_block_the_event_loop():
    limiter = RateLimiter("payments", rate=20, per=1.0, burst=1, max_wait=1.0)
    order = []

    @limiter
    async def charge() -> None:
        order.append("charged")

    async def ticker() -> None:
        for _ in range(4):
            order.append("tick")
            await asyncio.sleep(0)  # only runs if the waiting charge yields the loop

    async def scenario() -> None:
        await charge()
        await asyncio.gather(charge(), ticker())  # the second charge waits ~50 ms

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started >= 0.045
    assert order == ["charged", "tick", "tick", "tick", "tick", "charged"]


def test_context_managers_take_one_token():
    clock = ManualClock()
    limiter = RateLimiter("payments", rate=2, clock=clock)
    with limiter:
        pass

    async def scenario() -> None:
        async with limiter:
            pass

    asyncio.run(scenario())
    with pytest.raises(RateLimited), limiter:
        pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0}, "rate=0 must be > 0"),
        ({"rate": 1, "per": 0}, "per=0 must be > 0"),
        ({"rate": 1, "burst": 0}, "burst=0 must be > 0"),
        ({"rate": 1, "max_wait": -1}, "max_wait=-1"),
    ],
)
def test_invalid_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        RateLimiter("payments", **options)


def test_state_must_implement_the_protocol():
    with pytest.raises(TypeError, match="RateLimiterState"):
        RateLimiter("payments", rate=1, state=object())
