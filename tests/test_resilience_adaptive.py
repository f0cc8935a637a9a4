"""AdaptiveLimit: AIMD and gradient move the limit from what calls report, deterministically
under a ManualClock; shares shed low-priority work first; the guard forms classify outcomes;
threads and asyncio tasks never exceed the limit; bad parameters are refused clearly."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading

import pytest

from sagaway.errors import ResilienceError
from sagaway.resilience import (
    AdaptiveLimit,
    BreakerOpen,
    LimitExceeded,
    LimitPermit,
    ManualClock,
    Rejected,
    TimeoutExceeded,
)


class SimulatedService:
    """A service of `capacity` concurrent calls taking `base` seconds each; beyond capacity
    calls queue, so a call admitted with n in flight takes `base * n / capacity`. Callers
    always want more than the limit admits (offered load above capacity)."""

    def __init__(self, limit: AdaptiveLimit, clock: ManualClock, capacity: int, base: float):
        self.limit, self.clock = limit, clock
        self.capacity, self.base = capacity, base
        self._running: list[tuple[float, int, LimitPermit]] = []
        self._order = itertools.count()
        self.latencies: list[float] = []

    def run(self, seconds: float) -> list[int]:
        """Run for `seconds` of simulated time; the limit after each completed call."""
        limits = []
        end = self.clock() + seconds
        while self.clock() < end:
            while (permit := self.limit.try_acquire()) is not None:
                latency = self.base * max(1.0, self.limit.in_flight / self.capacity)
                self.latencies.append(latency)
                heapq.heappush(self._running, (self.clock() + latency, next(self._order), permit))
            finish, _, permit = heapq.heappop(self._running)
            self.clock.set(finish)
            permit.success()
            limits.append(self.limit.limit)
        return limits


def gradient(clock: ManualClock, **params) -> AdaptiveLimit:
    params.setdefault("probe_jitter", 0.0)
    return AdaptiveLimit("gradient", clock=clock, name="svc", **params)


# ----------------------------------------------------------------------- AIMD


def test_aimd_grows_by_about_one_per_round_of_successes_while_in_use():
    clock = ManualClock()
    limit = AdaptiveLimit("aimd", initial=10, clock=clock)
    running = [limit.try_acquire() for _ in range(10)]
    for _ in range(30):  # three rounds of a caller keeping ten calls in flight
        clock.advance(0.01)
        running.pop(0).success()
        running.append(limit.try_acquire())
    assert limit.limit == 12  # + 1/limit per success: 10 -> 12.6
    assert limit.stats()["limit"] == 12


def test_aimd_does_not_grow_while_less_than_half_is_used():
    clock = ManualClock()
    limit = AdaptiveLimit("aimd", initial=10, clock=clock)
    for _ in range(100):
        permit = limit.try_acquire()
        clock.advance(0.01)
        permit.success()
    assert limit.limit == 10


def test_aimd_halves_on_a_drop_once_per_round():
    clock = ManualClock()
    limit = AdaptiveLimit("aimd", initial=20, clock=clock)
    first, second = limit.try_acquire(), limit.try_acquire()
    first.dropped()
    assert limit.limit == 10
    second.dropped()  # admitted before the backoff: the same overload, no second halving
    assert limit.limit == 10
    limit.try_acquire().dropped()  # admitted after it: a new round
    assert limit.limit == 5
    assert limit.dropped == 3
    for _ in range(10):
        limit.try_acquire().dropped()
    assert limit.limit == 1  # never below min_limit


def test_aimd_counts_a_success_slower_than_its_timeout_as_a_drop():
    clock = ManualClock()
    limit = AdaptiveLimit("aimd", initial=20, clock=clock, timeout=1.0)
    permit = limit.try_acquire()
    clock.advance(1.5)
    permit.success()
    assert limit.limit == 10


def test_aimd_limit_saws_below_the_point_where_calls_time_out():
    clock = ManualClock()
    limit = AdaptiveLimit("aimd", initial=10, clock=clock, timeout=0.05)
    service = SimulatedService(limit, clock, capacity=20, base=0.01)
    limits = service.run(30)
    # 0.05 s is reached at 5 x capacity = 100 calls in flight: the limit grows to there,
    # halves, grows again; it never stays above it.
    assert max(limits[len(limits) // 2 :]) <= 102
    assert min(limits[len(limits) // 2 :]) >= 40


# ------------------------------------------------------------------- gradient


def test_gradient_measures_min_rtt_first_at_the_probe_concurrency():
    clock = ManualClock()
    limit = gradient(clock, initial=20, probe_samples=5, probe_concurrency=3)
    assert limit.limit == 3
    for _ in range(5):
        permit = limit.try_acquire()
        clock.advance(0.02)
        permit.success()
    stats = limit.stats()
    assert stats["min_rtt"] == pytest.approx(0.02)
    assert not stats["probing"]
    assert limit.limit == 20


def test_gradient_settles_in_a_band_around_the_service_capacity():
    clock = ManualClock()
    limit = gradient(clock)
    service = SimulatedService(limit, clock, capacity=30, base=0.01)
    limits = service.run(10)[-3000:]
    # Equilibrium: gradient * limit = capacity * (1 + buffer), plus sqrt of it as headroom:
    # about 1.45 x capacity; latency stays near min_rtt x 1.45 instead of growing without end.
    assert min(limits) >= 30 and max(limits) <= 48
    assert max(service.latencies[-3000:]) <= 0.016


def test_gradient_backs_off_when_latency_rises():
    clock = ManualClock()
    limit = gradient(clock)
    service = SimulatedService(limit, clock, capacity=50, base=0.01)
    before = service.run(10)[-1]
    service.capacity = 20  # the service slows down: the same concurrency takes longer
    after = service.run(5)[-2000:]
    assert before >= 50
    assert min(after) >= 20 and max(after) <= 35


def test_gradient_does_not_grow_while_less_than_half_is_used():
    clock = ManualClock()
    limit = gradient(clock, probe_samples=1)
    permit = limit.try_acquire()
    clock.advance(0.01)
    permit.success()  # min_rtt measured
    for _ in range(1000):  # one call at a time, always at min_rtt
        permit = limit.try_acquire()
        clock.advance(0.01)
        permit.success()
    assert limit.limit == 20


def test_gradient_measures_min_rtt_again_after_the_probe_interval():
    clock = ManualClock()
    limit = gradient(clock, probe_interval=5.0, probe_samples=10)
    service = SimulatedService(limit, clock, capacity=50, base=0.01)
    service.run(4)
    service.base = 0.05  # the service's no-load latency changed for good
    service.run(10)
    assert limit.stats()["min_rtt"] == pytest.approx(0.05)
    assert 50 <= service.run(5)[-1] <= 80  # the same capacity is found again


def test_gradient_drop_backs_off_multiplicatively():
    clock = ManualClock()
    limit = gradient(clock, probe_samples=1, backoff_ratio=0.5)
    first = limit.try_acquire()
    clock.advance(0.01)
    first.success()
    limit.try_acquire().dropped()
    assert limit.limit == 10


# ---------------------------------------------------------------------- share


def test_share_sheds_low_priority_work_first():
    limit = AdaptiveLimit("aimd", initial=10, clock=ManualClock())
    reads = [limit.try_acquire(share=0.5) for _ in range(5)]
    assert all(reads)
    assert limit.try_acquire(share=0.5) is None  # floor(10 x 0.5) = 5 in flight: shed
    checkouts = [limit.try_acquire() for _ in range(5)]
    assert all(checkouts)  # the rest of the limit is still open to full-share work
    assert limit.try_acquire() is None
    assert limit.in_flight == 10
    assert limit.shed == 2


def test_a_share_smaller_than_one_permit_sheds_everything_of_that_kind():
    limit = AdaptiveLimit("aimd", initial=1, clock=ManualClock())
    assert limit.try_acquire(share=0.5) is None  # floor(0.5) = 0
    assert limit.try_acquire() is not None


# ------------------------------------------------------------------ the guard


def test_with_block_raises_limit_exceeded_when_full():
    limit = AdaptiveLimit("aimd", initial=1, clock=ManualClock(), name="payments")
    with limit:
        assert limit.in_flight == 1
        with pytest.raises(LimitExceeded) as refused:
            with limit:
                pass  # pragma: no cover - refused on entry
    error = refused.value
    assert isinstance(error, Rejected) and isinstance(error, ResilienceError)
    assert (error.name, error.limit, error.in_flight) == ("payments", 1, 1)
    assert error.retry_after == pytest.approx(0.1)  # nothing measured yet
    assert "adaptive limit 'payments' is full" in str(error)
    assert limit.in_flight == 0


def test_retry_after_follows_the_measured_latency():
    clock = ManualClock()
    limit = AdaptiveLimit("aimd", initial=1, max_limit=1, clock=clock)
    with limit:
        clock.advance(0.4)
    permit = limit.acquire()
    with pytest.raises(LimitExceeded) as refused:
        limit.acquire()
    permit.ignore()
    assert refused.value.retry_after == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("error", "drops"),
    [
        (TimeoutExceeded(name="t", seconds=1, abandoned=False), 1),
        (TimeoutError("socket"), 1),
        (BreakerOpen(name="b", state="open", retry_after=1, retry_at=0), 1),
        (ValueError("card declined"), 0),  # the dependency answered: a success sample
    ],
)
def test_the_guard_counts_timeouts_and_refusals_as_drops(error, drops):
    limit = AdaptiveLimit("aimd", initial=8, clock=ManualClock())

    def call():
        raise error

    with pytest.raises(type(error)):
        limit.call(call)
    assert limit.dropped == drops
    assert limit.limit == (4 if drops else 8)
    assert limit.in_flight == 0


def test_cancellation_releases_without_a_sample():
    clock = ManualClock()
    limit = AdaptiveLimit("aimd", initial=8, clock=clock)

    async def main() -> None:
        async def slow() -> None:
            async with limit:
                await asyncio.Event().wait()

        task = asyncio.create_task(slow())
        while limit.in_flight == 0:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert (limit.in_flight, limit.dropped, limit.limit) == (0, 0, 8)
    assert limit.stats()["latency"] is None


def test_decorated_async_function_runs_under_the_limit():
    limit = AdaptiveLimit("aimd", initial=2, clock=ManualClock())

    @limit
    async def charge(amount: int) -> int:
        assert limit.in_flight == 1
        return amount

    assert asyncio.run(charge(5)) == 5
    assert limit.in_flight == 0


def test_limit_exceeded_pickles_with_its_attributes():
    import pickle

    error = LimitExceeded(name="edge", limit=4, in_flight=4, share=0.5, retry_after=0.2)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.limit, copy.in_flight, copy.share, copy.retry_after) == (
        "edge",
        4,
        4,
        0.5,
        0.2,
    )
    assert str(copy) == str(error)


def test_a_permit_reported_twice_is_refused():
    limit = AdaptiveLimit("aimd", clock=ManualClock())
    permit = limit.try_acquire()
    permit.success()
    with pytest.raises(RuntimeError, match="already reported"):
        permit.dropped()
    assert limit.in_flight == 0


# ------------------------------------------------------- threads and asyncio


def test_threads_never_exceed_the_limit():
    limit = AdaptiveLimit("aimd", initial=4, max_limit=4)
    seen, lock = [], threading.Lock()
    in_body = [0]

    def work() -> None:
        for _ in range(200):
            permit = limit.try_acquire()
            if permit is None:
                continue
            with lock:
                in_body[0] += 1
                seen.append(in_body[0])
            with lock:
                in_body[0] -= 1
            permit.success()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen and max(seen) <= 4
    assert limit.in_flight == 0


def test_tasks_of_one_loop_each_hold_their_own_permit():
    limit = AdaptiveLimit("aimd", initial=50, max_limit=50)
    peak = [0]

    async def main() -> None:
        gate = asyncio.Event()

        async def one() -> None:
            async with limit:
                peak[0] = max(peak[0], limit.in_flight)
                await gate.wait()

        tasks = [asyncio.create_task(one()) for _ in range(80)]
        while limit.in_flight + limit.shed < 80:
            await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        refused = [r for r in results if isinstance(r, LimitExceeded)]
        assert len(refused) == 30

    asyncio.run(main())
    assert peak[0] == 50
    assert limit.in_flight == 0


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "vegas"}, "algorithm='vegas' is not one of"),
        ({"initial": 0}, "initial=0 must be >= 1"),
        ({"min_limit": 5, "initial": 2}, "initial=2 must be >= 5"),
        ({"max_limit": 10, "initial": 20}, "initial=20 must be <= max_limit=10"),
        ({"min_limit": 10, "max_limit": 5, "initial": 10}, "max_limit=5 must be >= 10"),
        ({"algorithm": "aimd", "backoff_ratio": 1.5}, "backoff_ratio=1.5 must be in (0, 1)"),
        ({"algorithm": "aimd", "timeout": 0}, "timeout=0 must be > 0 seconds"),
        ({"percentile": 90}, "percentile=90 must be in (0, 1]"),
        ({"window": -1}, "window=-1 must be > 0 seconds"),
        ({"probe_samples": 0}, "probe_samples=0 must be an int >= 1"),
    ],
)
def test_bad_parameters_are_refused_with_the_fix(kwargs, message):
    with pytest.raises(ValueError) as refused:
        AdaptiveLimit(**kwargs)
    assert message in str(refused.value)


def test_an_unknown_parameter_names_the_ones_the_algorithm_takes():
    with pytest.raises(TypeError) as refused:
        AdaptiveLimit("aimd", buffer=0.2)
    assert "the 'aimd' algorithm has no parameter 'buffer'; it takes ['backoff_ratio'" in str(
        refused.value
    )
    with pytest.raises(TypeError, match=r"initial=2\.5 must be an int"):
        AdaptiveLimit(initial=2.5)


@pytest.mark.parametrize("share", [0, 1.5, -1, True])
def test_a_share_outside_zero_to_one_is_refused(share):
    limit = AdaptiveLimit()
    with pytest.raises(ValueError, match=r"share=.* must be in \(0, 1\]"):
        limit.try_acquire(share=share)
    assert limit.in_flight == 0
