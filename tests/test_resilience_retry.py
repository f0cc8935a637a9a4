"""Retry: the policy the engine reads, standalone use, and the retry budget."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from sagaway.resilience import (
    BreakerOpen,
    ManualClock,
    Permanent,
    RateLimited,
    Retry,
    RetryBudget,
)


class Flaky:
    """Fails `failures` times with `error`, then returns "ok"; counts tries."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.tries = 0

    def __call__(self) -> str:
        self.tries += 1
        if self.tries <= self.failures:
            raise self.error(f"try {self.tries}")
        return "ok"


# ------------------------------------------------------------------- the policy


def test_attempts_count_every_try_the_first_included():
    retry = Retry(attempts=3)
    error = ConnectionError()
    assert retry.allows(error, 1) and retry.allows(error, 2)
    assert not retry.allows(error, 3)
    assert not Retry(attempts=1).allows(error, 1)
    assert Retry(attempts=None).allows(error, 10_000)


def test_filters_and_permanent():
    retry = Retry(on=(ConnectionError, TimeoutError), not_on=ConnectionRefusedError)
    assert retry.retryable(ConnectionError())
    assert not retry.retryable(ConnectionRefusedError())
    assert not retry.retryable(ValueError())
    assert not retry.retryable(Permanent("card declined"))
    assert Retry(on=ValueError).on == (ValueError,)  # a single class is accepted


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated", "none"])
def test_delays_stay_within_the_documented_bounds(jitter):
    retry = Retry(base=0.1, cap=2.0, multiplier=2.0, jitter=jitter)
    rng = random.Random(7)
    previous = None
    for n in range(1, 12):
        delay = retry.delay(n, previous, rng)
        ceiling = min(2.0, 0.1 * 2.0 ** (n - 1))
        if jitter == "full":
            assert 0.0 <= delay <= ceiling
        elif jitter == "equal":
            assert ceiling / 2 <= delay <= ceiling
        elif jitter == "decorrelated":
            assert 0.1 <= delay <= min(2.0, 3 * (previous or 0.1))
        else:
            assert delay == ceiling
        previous = delay


def test_invalid_policies_are_refused():
    with pytest.raises(ValueError, match="first included"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        Retry(jitter="random")
    with pytest.raises(TypeError, match="RetryBudget"):
        Retry(budget=5)


# ------------------------------------------------------------------- standalone


def test_call_retries_until_success():
    flaky = Flaky(failures=2)
    assert Retry(attempts=3, base=0).call(flaky) == "ok"
    assert flaky.tries == 3


def test_call_gives_up_after_attempts_and_raises_the_last_error():
    flaky = Flaky(failures=5)
    with pytest.raises(ConnectionError, match="try 3"):
        Retry(attempts=3, base=0).call(flaky)
    assert flaky.tries == 3


def test_errors_not_retried_are_raised_at_once():
    flaky = Flaky(failures=5, error=ValueError)
    with pytest.raises(ValueError):
        Retry(attempts=5, base=0, on=ConnectionError).call(flaky)
    assert flaky.tries == 1


def test_decorates_async_functions_and_sleeps_between_tries():
    tries = []

    @Retry(attempts=4, base=0.01, jitter="none")
    async def fetch(order: str) -> str:
        """Fetch an order."""
        tries.append(time.monotonic())
        if len(tries) < 3:
            raise ConnectionError("down")
        return order

    assert asyncio.run(fetch("o-1")) == "o-1"
    assert len(tries) == 3
    assert tries[1] - tries[0] >= 0.009  # 10 ms, then 20 ms
    assert tries[2] - tries[1] >= 0.019
    assert fetch.__name__ == "fetch" and fetch.__doc__ == "Fetch an order."


def test_waits_at_least_the_retry_after_of_a_refusal():
    tries = []

    def limited() -> str:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise RateLimited(name="quota", tokens=1, retry_after=0.05, max_wait=0)
        return "ok"

    assert Retry(attempts=2, base=0).call(limited) == "ok"
    assert tries[1] - tries[0] >= 0.045


def test_gives_up_at_once_when_a_refusal_asks_to_wait_longer_than_cap():
    tries = []

    def behind_open_breaker() -> str:
        tries.append(1)
        raise BreakerOpen(name="payments", state="open", retry_after=30.0, retry_at=0.0)

    started = time.monotonic()
    with pytest.raises(BreakerOpen):
        Retry(attempts=5, cap=10.0).call(behind_open_breaker)
    assert time.monotonic() - started < 1.0
    assert tries == [1]


# ------------------------------------------------------------------- the budget


def test_budget_pays_retries_from_successes_and_time():
    clock = ManualClock()
    budget = RetryBudget(ratio=0.5, min_per_second=0.1, capacity=2, clock=clock)
    assert budget.withdraw() and budget.withdraw()
    assert not budget.withdraw()
    budget.deposit()
    assert not budget.withdraw()  # half a token
    budget.deposit()
    assert budget.withdraw()
    clock.advance(10)  # 0.1 per second
    assert budget.balance == pytest.approx(1.0)
    assert budget.withdraw()
    clock.advance(1000)
    assert budget.balance == 2.0  # capped
    assert (budget.withdrawn, budget.refused) == (4, 2)


def test_budget_caps_retries_of_a_fleet_during_an_outage():
    clock = ManualClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0, capacity=3, clock=clock)
    retry = Retry(attempts=5, base=0, budget=budget)
    calls = [Flaky(failures=100) for _ in range(10)]
    for flaky in calls:
        with pytest.raises(ConnectionError):
            retry.call(flaky)
    assert sum(f.tries for f in calls) == 10 + 3  # without the budget: 50


def test_successes_refill_the_budget_through_the_policy():
    clock = ManualClock()
    budget = RetryBudget(ratio=0.25, min_per_second=0, capacity=1, clock=clock)
    retry = Retry(attempts=3, base=0, budget=budget)
    assert retry.allows(ConnectionError(), 1)  # spends the only token
    assert not retry.allows(ConnectionError(), 1)
    for _ in range(4):
        retry.call(lambda: "ok")  # each success earns a quarter
    flaky = Flaky(failures=1)
    assert retry.call(flaky) == "ok"
    assert flaky.tries == 2


def test_budget_is_not_spent_on_errors_that_are_not_retried():
    clock = ManualClock()
    budget = RetryBudget(min_per_second=0, capacity=1, clock=clock)
    retry = Retry(attempts=3, budget=budget)
    assert not retry.allows(Permanent("declined"), 1)
    assert not retry.allows(ConnectionError(), 3)  # out of attempts
    assert budget.balance == 1.0


def test_invalid_budgets_are_refused():
    with pytest.raises(ValueError, match="fraction"):
        RetryBudget(ratio=20)
    with pytest.raises(ValueError, match="capacity"):
        RetryBudget(capacity=0.5)
