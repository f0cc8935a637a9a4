"""CircuitBreaker: thresholds, windows, half-open trials, manual states, events, concurrency."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sagaway.resilience import (
    BreakerOpen,
    BreakerState,
    CircuitBreaker,
    ManualClock,
    TimeWindow,
)


class Down(ConnectionError):
    """The dependency failed."""


def make(clock: ManualClock, **options) -> CircuitBreaker:
    options.setdefault("min_calls", 4)
    options.setdefault("window", 10)
    options.setdefault("open_for", 30.0)
    options.setdefault("half_open_calls", 3)
    return CircuitBreaker("payments", clock=clock, wall_clock=clock, **options)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(lambda: "ok") == "ok"


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    def boom() -> None:
        raise Down("payment provider unreachable")

    for _ in range(times):
        with pytest.raises(Down):
            breaker.call(boom)


def trip(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.min_calls)
    assert breaker.state == "open"


def test_state_is_a_string_enum_starting_closed():
    breaker = CircuitBreaker("payments")
    assert breaker.state is BreakerState.CLOSED
    assert breaker.state == "closed"
    assert isinstance(breaker.state, str)


def test_does_not_open_before_min_calls_are_recorded():
    clock = ManualClock()
    breaker = make(clock, min_calls=4)
    fail(breaker, 3)
    assert breaker.state == "closed"
    assert breaker.metrics().failure_rate is None  # not rated below min_calls


def test_opens_when_failure_rate_reaches_threshold_once_min_calls_recorded():
    clock = ManualClock()
    breaker = make(clock, min_calls=4, failure_rate=0.5)
    succeed(breaker)
    fail(breaker)
    succeed(breaker)
    assert breaker.state == "closed"
    fail(breaker)  # 2 of 4 failed: 50% reaches the threshold
    assert breaker.state == "open"
    assert "failure rate 2/4" in breaker.events[-1].reason


def test_stays_closed_while_failure_rate_is_below_threshold():
    clock = ManualClock()
    breaker = make(clock, min_calls=4, failure_rate=0.5)
    for _ in range(5):
        succeed(breaker, 2)
        fail(breaker)
    assert breaker.state == "closed"
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures) == (10, 5 - 1)  # window of 10 slid past one failure


def test_count_window_forgets_the_oldest_outcomes():
    clock = ManualClock()
    breaker = make(clock, window=4, min_calls=4, failure_rate=0.5)
    fail(breaker)
    succeed(breaker, 3)  # F S S S: 25%
    succeed(breaker)  # S S S S: the failure slid out
    assert breaker.metrics().failures == 0
    fail(breaker)
    assert breaker.state == "closed"  # S S S F: 25%
    fail(breaker)
    assert breaker.state == "open"  # S S F F: 50%


def test_opens_on_slow_call_rate_even_when_calls_succeed():
    clock = ManualClock()
    breaker = make(clock, slow_call_duration=2.0, slow_call_rate=0.5, min_calls=4)

    def slow() -> str:
        clock.advance(2.5)
        return "late but fine"

    succeed(breaker, 2)
    breaker.call(slow)
    assert breaker.state == "closed"
    breaker.call(slow)
    assert breaker.state == "open"
    assert "slow-call rate 2/4" in breaker.events[-1].reason


def test_open_breaker_refuses_without_calling_and_says_when_to_come_back():
    clock = ManualClock()
    breaker = make(clock, open_for=30.0)
    trip(breaker)
    clock.advance(10)
    called = []
    with pytest.raises(BreakerOpen) as refused:
        breaker.call(lambda: called.append(1))
    assert called == []
    assert refused.value.state == "open"
    assert refused.value.retry_after == pytest.approx(20.0)
    assert refused.value.retry_at == pytest.approx(clock() + 20.0)  # wall clock
    assert refused.value.name == "payments"
    assert "failure rate" in str(refused.value)
    assert breaker.metrics().not_permitted == 1


def test_after_open_for_exactly_half_open_calls_trials_pass():
    clock = ManualClock()
    breaker = make(clock, open_for=30.0, half_open_calls=3)
    trip(breaker)
    clock.advance(30)
    assert breaker.state == "half_open"
    permits = [breaker.acquire() for _ in range(3)]
    with pytest.raises(BreakerOpen) as refused:
        breaker.acquire()
    assert refused.value.state == "half_open"
    assert 0 < refused.value.retry_after <= 1.0
    for permit in permits:
        permit.record_success(0.01)
    assert breaker.state == "closed"
    assert breaker.metrics().calls == 0  # a closed breaker starts with a fresh window
    assert [(e.from_state, e.to_state) for e in breaker.events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_half_open_reopens_when_trials_fail_and_restarts_the_open_period():
    clock = ManualClock()
    breaker = make(clock, open_for=30.0, half_open_calls=3, failure_rate=0.5)
    trip(breaker)
    clock.advance(30)
    succeed(breaker)
    fail(breaker)
    assert breaker.state == "half_open"
    fail(breaker)  # 2 of 3 trials failed
    assert breaker.state == "open"
    assert breaker.events[-1].reason == "2/3 trial calls failed"
    clock.advance(29)
    with pytest.raises(BreakerOpen) as refused:
        breaker.call(lambda: None)
    assert refused.value.retry_after == pytest.approx(1.0)


def test_half_open_closes_when_failures_stay_below_threshold():
    clock = ManualClock()
    breaker = make(clock, half_open_calls=3, failure_rate=0.5)
    trip(breaker)
    clock.advance(30)
    fail(breaker)
    succeed(breaker, 2)  # 1 of 3 failed: below 50%
    assert breaker.state == "closed"


def test_unreported_trials_reopen_the_breaker_after_half_open_timeout():
    clock = ManualClock()
    breaker = make(clock, half_open_calls=2, half_open_timeout=5.0)
    trip(breaker)
    clock.advance(30)
    lost = [breaker.acquire(), breaker.acquire()]  # e.g. the caller crashed
    clock.advance(4)
    assert breaker.state == "half_open"
    clock.advance(1)
    assert breaker.state == "open"
    assert "not all reported" in breaker.events[-1].reason
    lost[0].record_success()  # a late report of the old period changes nothing
    assert breaker.state == "open"


def test_ignored_errors_are_not_counted_and_give_back_a_trial_slot():
    clock = ManualClock()
    breaker = make(clock, ignore=ValueError, half_open_calls=1)

    def invalid() -> None:
        raise ValueError("bad card number")

    for _ in range(10):
        with pytest.raises(ValueError):
            breaker.call(invalid)
    assert breaker.metrics().calls == 0
    trip(breaker)
    clock.advance(30)
    with pytest.raises(ValueError):
        breaker.call(invalid)  # the only trial slot comes back
    succeed(breaker)
    assert breaker.state == "closed"


def test_errors_outside_record_count_as_successes():
    clock = ManualClock()
    breaker = make(clock, record=ConnectionError)

    def declined() -> None:
        raise KeyError("card declined")

    for _ in range(6):
        with pytest.raises(KeyError):
            breaker.call(declined)
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures, breaker.state) == (6, 0, "closed")


def test_record_accepts_a_predicate():
    class HttpError(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(status)
            self.status = status

    clock = ManualClock()
    breaker = make(clock, record=lambda e: getattr(e, "status", 500) >= 500)
    for status in (404, 409, 503, 502):
        with pytest.raises(HttpError):
            breaker.call(_raiser(HttpError(status)))
    assert breaker.metrics().failures == 2
    assert breaker.state == "open"


def _raiser(error: BaseException):
    def raise_it() -> None:
        raise error

    return raise_it


def test_cancellation_is_never_counted():
    clock = ManualClock()
    breaker = make(clock)
    for _ in range(5):
        with pytest.raises(asyncio.CancelledError):
            breaker.call(_raiser(asyncio.CancelledError()))
    assert breaker.metrics().calls == 0


def test_forced_open_refuses_until_reset_whatever_the_time():
    clock = ManualClock()
    breaker = make(clock)
    breaker.force_open()
    clock.advance(3600)
    with pytest.raises(BreakerOpen) as refused:
        breaker.call(lambda: None)
    assert refused.value.state == "forced_open"
    assert refused.value.retry_after == breaker.open_for
    breaker.reset()
    succeed(breaker)
    assert breaker.state == "closed"


def test_disabled_breaker_lets_everything_through_and_records_nothing():
    clock = ManualClock()
    breaker = make(clock)
    breaker.disable()
    fail(breaker, 50)
    assert breaker.state == "disabled"
    assert breaker.metrics().calls == 0
    breaker.reset()
    assert breaker.state == "closed"


def test_reset_forgets_the_window():
    clock = ManualClock()
    breaker = make(clock, min_calls=4)
    fail(breaker, 3)
    breaker.reset()
    fail(breaker)
    assert breaker.state == "closed"
    assert breaker.events[-1].reason == "reset()"


def test_listeners_see_every_transition_and_a_failing_listener_breaks_nothing():
    clock = ManualClock()
    seen = []

    def broken(_event) -> None:
        raise RuntimeError("listener bug")

    breaker = make(clock, on_transition=[broken, seen.append])
    trip(breaker)
    clock.advance(30)
    succeed(breaker, 3)
    assert [(e.from_state.value, e.to_state.value) for e in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert all(e.breaker == "payments" for e in seen)
    assert seen[0].at == pytest.approx(clock() - 30)


def test_permit_reports_outcome_of_a_call_timed_by_the_caller():
    clock = ManualClock()
    breaker = make(clock, slow_call_duration=1.0, slow_call_rate=0.5)
    for _ in range(2):
        breaker.acquire().record_success(duration=5.0)  # slow
    breaker.acquire().record_failure(Down("x"), duration=0.1)
    breaker.acquire().record_success(duration=0.1)
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures, metrics.slow_calls) == (4, 1, 2)
    assert breaker.state == "open"


def test_permit_is_a_context_manager_and_reports_once():
    clock = ManualClock()
    breaker = make(clock)
    with pytest.raises(Down), breaker.acquire():
        raise Down("x")
    with breaker.acquire():
        pass
    assert breaker.metrics().failures == 1
    permit = breaker.acquire()
    permit.record_success()
    with pytest.raises(RuntimeError, match="already reported"):
        permit.record_failure(Down("x"))


def test_breaker_guards_blocks_in_threads_and_tasks_independently():
    clock = ManualClock()
    breaker = make(clock, window=1000, min_calls=1000)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(fails: bool) -> None:
        barrier.wait()
        try:
            for _ in range(50):
                try:
                    with breaker:
                        if fails:
                            raise Down("x")
                except Down:
                    pass
        except BaseException as error:  # surfaced below: a thread must not fail silently
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    async def task(fails: bool) -> None:
        try:
            async with breaker:
                await asyncio.sleep(0.001)  # the blocks of 20 tasks interleave
                if fails:
                    raise Down("x")
        except Down:
            pass

    async def scenario() -> None:
        await asyncio.gather(*(task(i % 2 == 0) for i in range(20)))

    asyncio.run(scenario())
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures) == (220, 110)
    breaker.force_open()
    with pytest.raises(BreakerOpen), breaker:
        pytest.fail("the block must not run")


def test_outcome_of_a_call_admitted_before_a_transition_is_not_counted_after_it():
    clock = ManualClock()
    breaker = make(clock, half_open_calls=1)
    early = breaker.acquire()
    trip(breaker)
    clock.advance(30)
    early.record_success()  # admitted while closed: must not count as the trial
    assert breaker.state == "half_open"
    fail(breaker)
    assert breaker.state == "open"


def test_time_window_counts_only_recent_seconds():
    clock = ManualClock(start=100.0)
    breaker = make(clock, window=TimeWindow(10), min_calls=4, failure_rate=0.5)
    fail(breaker, 2)
    succeed(breaker)
    clock.advance(10)  # the first three calls' second has left the window
    assert breaker.metrics().calls == 0
    succeed(breaker, 2)
    fail(breaker)
    assert breaker.state == "closed"  # 1 of 3, and below min_calls anyway
    clock.advance(5)
    fail(breaker)
    assert breaker.state == "open"  # 2 of 4 within the last 10 s


def test_async_functions_are_guarded_without_blocking():
    clock = ManualClock()
    breaker = make(clock)

    @breaker
    async def charge(amount: int) -> dict:
        """Charge a card."""
        if amount < 0:
            raise Down("provider down")
        await asyncio.sleep(0)
        return {"charged": amount}

    async def scenario() -> None:
        assert await charge(5) == {"charged": 5}
        assert await breaker.call(charge.__wrapped__, 7) == {"charged": 7}
        for _ in range(2):  # 2 of 4 calls failed: the breaker opens
            with pytest.raises(Down):
                await charge(-1)
        with pytest.raises(BreakerOpen):
            await charge(5)

    asyncio.run(scenario())
    assert charge.__name__ == "charge" and charge.__doc__ == "Charge a card."


def test_invalid_settings_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"fraction in \(0, 1\]; 50% is 0.5"):
        CircuitBreaker("payments", failure_rate=50)
    with pytest.raises(ValueError, match="could never open"):
        CircuitBreaker("payments", window=10, min_calls=20)
    with pytest.raises(TypeError, match="CountWindow"):
        CircuitBreaker("payments", window=2.5)
    with pytest.raises(ValueError, match="half_open_calls"):
        CircuitBreaker("payments", half_open_calls=0)
    with pytest.raises(TypeError, match="decorates a function"):
        CircuitBreaker("payments")(42)


def test_concurrent_threads_lose_no_outcome():
    breaker = CircuitBreaker("payments", window=20_000, min_calls=20_000)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for i in range(1500):
            if i % 10 == 0:
                with pytest.raises(Down):
                    breaker.call(_raiser(Down("x")))
            else:
                breaker.call(lambda: None)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures) == (12_000, 1_200)


def test_concurrent_failures_open_the_breaker_exactly_once():
    opened = []
    breaker = CircuitBreaker(
        "payments",
        window=50,
        min_calls=50,
        on_transition=lambda e: opened.append(e) if e.to_state == "open" else None,
    )
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(100):
            try:
                breaker.call(_raiser(Down("x")))
            except (Down, BreakerOpen):
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 1
    assert breaker.state == "open"
    assert breaker.metrics().not_permitted >= 8 * 100 - 50 - 8  # the rest were refused


def test_refusals_pickle_with_their_attributes():
    import pickle

    from sagaway.resilience import BulkheadFull, RateLimited

    errors = [
        BreakerOpen(name="payments", state="open", retry_after=2.5, retry_at=99.0, reason="r"),
        RateLimited(name="quota", tokens=2, retry_after=0.5, max_wait=0.1),
        BulkheadFull(name="db-pool", max_concurrent=4, waited=0.2),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert copy.__dict__ == error.__dict__
        assert str(copy) == str(error)
    assert str(errors[0]) == (
        "circuit breaker 'payments' is open (r): call not permitted, next trial in 2.500s"
    )
