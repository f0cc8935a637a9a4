"""Shared state: breakers and rate limiters in two "processes" sharing one store."""

from __future__ import annotations

import threading

import pytest

from sagaway.resilience import (
    BreakerOpen,
    BreakerStateStore,
    BucketLevel,
    CircuitBreaker,
    InMemoryBreakerStateStore,
    InMemoryRateLimiterState,
    ManualClock,
    RateLimiter,
    RateLimiterState,
    take_tokens,
)


class Down(ConnectionError):
    """The dependency failed."""


def boom() -> None:
    raise Down("payment provider unreachable")


def pair(clock: ManualClock, store: InMemoryBreakerStateStore, **options):
    """Two breakers of the same name, as two worker processes would each have."""
    options = {
        "min_calls": 4,
        "window": 10,
        "open_for": 30.0,
        "half_open_calls": 2,
        "shared_ttl": 1.0,
        **options,
    }
    return tuple(
        CircuitBreaker("payments", shared=store, clock=clock, wall_clock=clock, **options)
        for _ in range(2)
    )


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Down):
            breaker.call(boom)


def test_in_memory_implementations_satisfy_the_protocols():
    assert isinstance(InMemoryBreakerStateStore(), BreakerStateStore)
    assert isinstance(InMemoryRateLimiterState(), RateLimiterState)


def test_breaker_store_publish_is_compare_and_set():
    store = InMemoryBreakerStateStore()
    first = store.publish("payments", "open", 100.0, expected_version=0)
    assert (first.state, first.until, first.version) == ("open", 100.0, 1)
    lost = store.publish("payments", "closed", 0.0, expected_version=0)  # stale writer
    assert lost == first
    second = store.publish("payments", "closed", 0.0, expected_version=1)
    assert (second.state, second.version) == ("closed", 2)
    assert store.read("payments") == second
    assert store.read("inventory") is None


def test_one_breaker_opening_opens_the_other_after_its_cache_expires():
    clock = ManualClock()
    store = InMemoryBreakerStateStore()
    a, b = pair(clock, store)
    b.call(lambda: "ok")  # b reads the store now and caches it for shared_ttl
    fail(a, 4)
    assert a.state == "open"
    published = store.read("payments")
    assert (published.state, published.until) == ("open", clock() + 30.0)

    clock.advance(0.5)
    assert b.call(lambda: "still cached") == "still cached"
    clock.advance(0.5)
    with pytest.raises(BreakerOpen) as refused:
        b.call(lambda: "never called")
    assert refused.value.retry_at == pytest.approx(published.until)
    assert refused.value.retry_after == pytest.approx(29.0)
    assert b.events[-1].reason.startswith("shared state v1")


def test_store_is_read_at_most_once_per_ttl_whatever_the_call_rate():
    clock = ManualClock()
    store = InMemoryBreakerStateStore()
    breaker, _ = pair(clock, store, shared_ttl=2.0)
    for _ in range(10):
        for _ in range(100):
            breaker.call(lambda: None)
        clock.advance(1.0)
    assert store.reads == 5


def test_a_successful_half_open_probe_closes_the_breaker_everywhere():
    clock = ManualClock()
    store = InMemoryBreakerStateStore()
    a, b = pair(clock, store)
    fail(a, 4)
    clock.advance(1)
    assert b.state == "open"  # honoured from the store
    clock.advance(29)
    a.call(lambda: "ok")
    a.call(lambda: "ok")  # both trials succeed
    assert a.state == "closed"
    assert store.read("payments").state == "closed"
    clock.advance(1)
    assert b.state == "closed"
    assert b.call(lambda: "ok") == "ok"


def test_half_open_probe_failing_in_one_process_reopens_for_all():
    clock = ManualClock()
    store = InMemoryBreakerStateStore()
    a, b = pair(clock, store)
    fail(a, 4)
    clock.advance(1)
    assert b.state == "open"  # b mirrors a's open period...
    clock.advance(30)
    assert b.state == "half_open"  # ...then probes the dependency itself
    fail(b, 2)
    assert b.state == "open"
    clock.advance(1)
    assert a.state == "open"
    with pytest.raises(BreakerOpen):
        a.call(lambda: None)


def test_operator_actions_are_published():
    clock = ManualClock()
    store = InMemoryBreakerStateStore()
    a, b = pair(clock, store)
    a.force_open()
    clock.advance(1)
    assert b.state == "forced_open"
    b.reset()
    clock.advance(1)
    assert a.state == "closed"
    a.disable()
    clock.advance(1)
    assert b.state == "disabled"


def test_a_failing_store_degrades_to_a_local_breaker():
    class BrokenStore(InMemoryBreakerStateStore):
        def read(self, name):
            raise OSError("store unreachable")

        def publish(self, name, state, until, expected_version):
            raise OSError("store unreachable")

    clock = ManualClock()
    breaker = CircuitBreaker(
        "payments", shared=BrokenStore(), min_calls=4, clock=clock, wall_clock=clock
    )
    assert breaker.call(lambda: "ok") == "ok"
    fail(breaker, 3)  # 3 of 4 calls failed
    assert breaker.state == "open"
    with pytest.raises(BreakerOpen):
        breaker.call(boom)


def test_two_limiters_share_one_bucket():
    clock = ManualClock()
    state = InMemoryRateLimiterState()
    a = RateLimiter("provider-quota", rate=5, per=1.0, state=state, clock=clock)
    b = RateLimiter("provider-quota", rate=5, per=1.0, state=state, clock=clock)
    other = RateLimiter("other-quota", rate=5, per=1.0, state=state, clock=clock)
    for limiter in (a, b, a, b, a):
        assert limiter.try_acquire() == 0.0
    assert b.try_acquire() == pytest.approx(0.2)
    assert a.try_acquire() == pytest.approx(0.2)
    assert other.try_acquire() == 0.0  # a separate bucket
    clock.advance(0.2)
    assert b.try_acquire() == 0.0
    assert a.try_acquire() == pytest.approx(0.2)


def test_shared_bucket_never_grants_more_than_its_tokens_under_threads():
    clock = ManualClock()
    state = InMemoryRateLimiterState()
    limiters = [RateLimiter("q", rate=100, state=state, clock=clock) for _ in range(4)]
    granted = []
    barrier = threading.Barrier(8)

    def worker(limiter: RateLimiter) -> None:
        barrier.wait()
        granted.append(sum(1 for _ in range(200) if limiter.try_acquire() == 0.0))

    threads = [threading.Thread(target=worker, args=(limiters[i % 4],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 100  # the clock did not move: exactly one burst


def test_take_tokens_reserves_only_within_max_wait():
    level, wait = take_tokens(None, rate=1, per=1, burst=2, tokens=2, now=0.0)
    assert (level, wait) == (BucketLevel(0.0, 0.0), 0.0)
    level2, wait = take_tokens(level, rate=1, per=1, burst=2, tokens=1, now=0.0, max_wait=0.5)
    assert (level2, wait) == (level, 1.0)  # due in 1 s, more than 0.5: nothing taken
    level3, wait = take_tokens(level, rate=1, per=1, burst=2, tokens=1, now=0.0, max_wait=1.0)
    assert (level3.tokens, wait) == (-1.0, 1.0)  # reserved ahead
    _, wait = take_tokens(level3, rate=1, per=1, burst=2, tokens=1, now=0.0, max_wait=0.0)
    assert wait == 2.0  # queued behind the reservation


def test_take_tokens_does_not_mint_tokens_for_a_clock_behind_the_bucket():
    level = BucketLevel(tokens=0.0, stamp=100.0)
    level2, wait = take_tokens(level, rate=1, per=1, burst=5, tokens=1, now=90.0)
    assert wait == 1.0 and level2 == level
    _, wait = take_tokens(level, rate=1, per=1, burst=5, tokens=1, now=101.0)
    assert wait == 0.0
