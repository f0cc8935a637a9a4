"""How a worker reads time: leases on the monotonic clock, steps of the store's clock noticed
and handled (the process-level scenarios are in test_faults_clock.py)."""

from __future__ import annotations

import time

from sagaway.engine._clockwatch import ClockWatch
from sagaway.engine._lease import Lease


def watch(calls: list) -> ClockWatch:
    return ClockWatch(
        10.0,
        hurry=lambda now: calls.append(("hurry", now)) or 0,
        renew=lambda: calls.append("renew"),
    )


def test_a_lease_that_seems_an_hour_long_after_the_clock_stepped_back_holds_only_its_length():
    now = time.time()
    lease = Lease(now + 3600 + 0.3, 0.3, now)  # granted by a clock an hour ahead
    assert not lease.ending()
    time.sleep(0.25)  # under a third of the length left: it may be ending, whatever the clock
    assert lease.ending()


def test_a_forward_step_renews_at_once_and_takes_over_nothing_for_a_lease():
    calls: list = []
    clock = watch(calls)
    assert clock.check(time.time(), time.monotonic())
    assert not clock.check(time.time() + 3600, time.monotonic())
    assert calls == ["renew"]
    assert not clock.check(time.time() + 3600, time.monotonic())  # still within the lease
    assert clock.steps == 1


def test_a_backward_step_renews_and_makes_runs_due_by_the_old_clock_due_now():
    calls: list = []
    clock = watch(calls)
    clock.check(time.time(), time.monotonic())
    earlier = time.time() - 3600
    assert clock.check(earlier, time.monotonic())  # taking over stays allowed
    assert calls == ["renew", ("hurry", earlier)]
    clock.check(earlier + 0.1, time.monotonic())  # a write stamped by the old clock may land
    assert calls[-1] == ("hurry", earlier + 0.1)


def test_a_reading_around_which_the_thread_paused_takes_over_nothing_and_sees_no_step():
    calls: list = []
    clock = watch(calls)
    clock.check(time.time(), time.monotonic())
    assert not clock.check(time.time() + 3600, time.monotonic() - 1.0)
    assert calls == [] and clock.steps == 0
    assert not clock.check(time.time() + 3600, time.monotonic())  # seen at the next reading
    assert calls == ["renew"]
