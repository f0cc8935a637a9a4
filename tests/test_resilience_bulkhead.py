"""Bulkhead: the limit holds under real threads and real asyncio tasks; waits are bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sagaway.resilience import Bulkhead, BulkheadFull


class Gauge:
    """Counts calls in flight and remembers the most seen at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.done = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1
            self.done += 1


def test_fifty_threads_never_exceed_the_limit():
    bulkhead = Bulkhead("db-pool", max_concurrent=5, max_wait=None)
    gauge = Gauge()

    @bulkhead
    def query() -> None:
        gauge.enter()
        time.sleep(0.002)
        gauge.leave()

    threads = [threading.Thread(target=lambda: [query() for _ in range(4)]) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gauge.done == 200
    assert gauge.most == 5  # reached, never exceeded
    assert (bulkhead.in_use, bulkhead.waiting) == (0, 0)


def test_five_hundred_tasks_never_exceed_the_limit():
    bulkhead = Bulkhead("db-pool", max_concurrent=10, max_wait=None)
    gauge = Gauge()

    @bulkhead
    async def query(i: int) -> int:
        gauge.enter()
        await asyncio.sleep(0.001)
        gauge.leave()
        return i

    async def scenario() -> list[int]:
        return await asyncio.gather(*(query(i) for i in range(500)))

    assert asyncio.run(scenario()) == list(range(500))
    assert gauge.most == 10
    assert gauge.done == 500
    assert bulkhead.in_use == 0


def test_threads_and_tasks_on_two_loops_share_one_limit():
    bulkhead = Bulkhead("provider", max_concurrent=3, max_wait=None)
    gauge = Gauge()

    def sync_call() -> None:
        with bulkhead:
            gauge.enter()
            time.sleep(0.002)
            gauge.leave()

    async def async_call() -> None:
        async with bulkhead:
            gauge.enter()
            await asyncio.sleep(0.002)
            gauge.leave()

    async def many_tasks() -> None:
        await asyncio.gather(*(async_call() for _ in range(40)))

    threads = [threading.Thread(target=lambda: [sync_call() for _ in range(5)]) for _ in range(8)]
    threads += [threading.Thread(target=asyncio.run, args=(many_tasks(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gauge.done == 8 * 5 + 2 * 40
    assert gauge.most == 3
    assert bulkhead.in_use == 0


def test_full_bulkhead_refuses_at_once_without_calling():
    bulkhead = Bulkhead("db-pool", max_concurrent=1)  # max_wait=0: fail fast
    called = []
    with bulkhead:
        started = time.monotonic()
        with pytest.raises(BulkheadFull) as refused:
            bulkhead.call(called.append, 1)
        assert time.monotonic() - started < 0.5  # no waiting (max_wait=0)
    assert called == []
    assert refused.value.max_concurrent == 1
    assert refused.value.retry_after is None
    assert "bulkhead 'db-pool' is full" in str(refused.value)
    assert bulkhead.rejected == 1
    bulkhead.call(called.append, 2)
    assert called == [2]


def test_waits_up_to_max_wait_then_gives_up():
    bulkhead = Bulkhead("db-pool", max_concurrent=1, max_wait=0.05)
    bulkhead.acquire()
    started = time.monotonic()
    with pytest.raises(BulkheadFull) as refused:
        bulkhead.acquire()
    waited = time.monotonic() - started
    assert 0.045 <= waited < 1.0
    assert refused.value.waited >= 0.045
    assert bulkhead.waiting == 0


def test_a_released_slot_goes_to_the_waiter_not_a_newcomer():
    bulkhead = Bulkhead("db-pool", max_concurrent=1, max_wait=2.0)
    bulkhead.acquire()
    got = threading.Event()

    def waiter() -> None:
        bulkhead.acquire()
        got.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    while bulkhead.waiting == 0:
        time.sleep(0.001)
    bulkhead.release()
    assert not bulkhead.try_acquire()  # handed over, not up for grabs
    assert got.wait(2.0)
    thread.join()
    assert bulkhead.in_use == 1
    bulkhead.release()
    assert bulkhead.in_use == 0


def test_waiting_task_does_not_block_the_event_loop():
    bulkhead = Bulkhead("db-pool", max_concurrent=1, max_wait=1.0)
    ticks = []

    async def ticker() -> None:
        for i in range(5):
            ticks.append(i)
            await asyncio.sleep(0.005)

    async def scenario() -> None:
        await bulkhead.acquire_async()
        waiting = asyncio.create_task(bulkhead.acquire_async())
        await ticker()  # runs while the other task waits for the slot
        bulkhead.release()
        await waiting
        bulkhead.release()

    asyncio.run(scenario())
    assert ticks == [0, 1, 2, 3, 4]
    assert bulkhead.in_use == 0


def test_async_wait_times_out_with_bulkhead_full():
    bulkhead = Bulkhead("db-pool", max_concurrent=1, max_wait=0.03)

    async def scenario() -> None:
        await bulkhead.acquire_async()
        with pytest.raises(BulkheadFull) as refused:
            await bulkhead.acquire_async()
        assert refused.value.waited >= 0.025
        bulkhead.release()

    asyncio.run(scenario())
    assert (bulkhead.in_use, bulkhead.waiting, bulkhead.rejected) == (0, 0, 1)


def test_cancelled_waiter_leaks_no_slot():
    bulkhead = Bulkhead("db-pool", max_concurrent=1, max_wait=None)

    async def scenario() -> None:
        await bulkhead.acquire_async()
        waiter = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0.01)
        assert bulkhead.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bulkhead.waiting == 0
        bulkhead.release()

    asyncio.run(scenario())
    assert bulkhead.in_use == 0


def test_waiter_cancelled_after_the_grant_passes_the_slot_on():
    bulkhead = Bulkhead("db-pool", max_concurrent=1, max_wait=None)

    async def scenario() -> None:
        await bulkhead.acquire_async()
        first = asyncio.create_task(bulkhead.acquire_async())
        second = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0.01)
        bulkhead.release()  # granted to `first`, which has not resumed yet
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1.0)  # the slot moved on to `second`
        bulkhead.release()

    asyncio.run(scenario())
    assert bulkhead.in_use == 0


def test_release_without_acquire_is_an_error():
    bulkhead = Bulkhead("db-pool", max_concurrent=2)
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        bulkhead.release()


def test_slot_is_released_when_the_call_raises():
    bulkhead = Bulkhead("db-pool", max_concurrent=1)

    @bulkhead
    def broken() -> None:
        raise ValueError("bad query")

    for _ in range(3):
        with pytest.raises(ValueError):
            broken()
    assert bulkhead.in_use == 0


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((0,), ValueError, "must be >= 1"),
        ((2.5,), TypeError, "must be an int"),
        ((2, -1), ValueError, "max_wait=-1"),
    ],
)
def test_invalid_settings_are_refused(args, error, message):
    with pytest.raises(error, match=message):
        Bulkhead("db-pool", *args)
