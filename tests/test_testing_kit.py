"""sagaway.testing: virtual time (timers, waits, backoffs, deadlines and leases in
milliseconds) and crash-point enumeration (`explore`)."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time

import pytest

from sagaway import (
    App,
    ConfigurationError,
    Retry,
    SagaCompensated,
    WaitTimeout,
    _clock,
    current_step,
)
from sagaway.engine import _crashpoints
from sagaway.errors import RateLimited
from sagaway.resilience import RateLimiter
from sagaway.testing import InvariantViolated, RunStuck, explore, virtual_time

ORIGINAL_PAUSE = _clock.pause


# --- virtual time ----------------------------------------------------------------------------
def checkout_app(url: str) -> tuple[App, list[str]]:
    """A checkout that reserves stock, then waits 30 minutes for the customer's details."""
    app = App(url, lease=3.0)
    undone: list[str] = []

    @app.step()
    def reserve(cart: str) -> str:
        return f"hold-{cart}"

    @reserve.compensation
    def release(cart: str, result: str | None = None) -> None:
        undone.append(f"released {result}")

    @app.saga()
    def checkout(ctx, cart: str) -> dict:
        hold = reserve(cart)
        info = ctx.wait("customer_info", timeout=1800)
        return {"hold": hold, "email": info["email"]}

    return app, undone


def test_a_30_minute_wait_times_out_and_compensates_on_virtual_time(store_url):
    app, undone = checkout_app(store_url)
    try:
        with virtual_time(app) as clock:
            run = app.start("checkout", "cart-1")
            with pytest.raises(SagaCompensated) as outcome:
                run.result()
            assert isinstance(outcome.value.error, WaitTimeout)
            assert 1800 <= clock.elapsed < 1801
            assert undone == ["released hold-cart-1"]
            assert run.status == "compensated"
    finally:
        app.close()


def test_a_signal_sent_after_ten_virtual_minutes_is_taken_before_the_timeout(tmp_path):
    app, undone = checkout_app(f"sqlite:///{tmp_path}/kit.db")
    with virtual_time(app) as clock:
        run = app.start("checkout", "cart-2")
        clock.run_until(lambda: run.status == "waiting")
        assert clock.elapsed == 0  # the stock was reserved at once
        clock.advance(600)
        assert run.status == "waiting"
        assert run.record.wait_deadline == pytest.approx(clock() + 1200, abs=0.5)
        app.signal(run.id, "customer_info", {"email": "a@example.com"})
        assert run.result() == {"hold": "hold-cart-2", "email": "a@example.com"}
        assert 600 <= clock.elapsed < 601  # nothing waited for the timeout
    assert undone == []
    app.close()


def test_an_hour_long_sleep_passes_at_once_and_ctx_now_sees_it(tmp_path):
    app = App(f"sqlite:///{tmp_path}/kit.db")

    @app.saga()
    def nap(ctx) -> float:
        before = ctx.now()
        ctx.sleep(3600)
        return (ctx.now() - before).total_seconds()

    with virtual_time(app) as clock:
        slept = app.start(nap).result()
        assert 3600 <= slept < 3601
        assert 3600 <= clock.elapsed < 3601
        assert clock.executions == 2  # the start, and the wake-up an hour later
    app.close()


def test_retry_backoff_passes_in_virtual_time_by_the_policy(tmp_path):
    app = App(f"sqlite:///{tmp_path}/kit.db")
    tries: list[float] = []

    @app.step(retry=Retry(attempts=5, base=60, cap=3600, jitter="none"))
    def flaky() -> str:
        tries.append(_clock.wall())
        if len(tries) < 5:
            raise ConnectionError("provider down")
        return "ok"

    @app.saga()
    def call(ctx) -> str:
        return flaky()

    with virtual_time(app) as clock:
        assert app.start(call).result() == "ok"
        gaps = [round(b - a) for a, b in itertools.pairwise(tries)]
        assert gaps == [60, 120, 240, 480]
        assert 900 <= clock.elapsed < 901
    app.close()


def test_jittered_backoff_passes_as_the_recorded_retry_delays_say(tmp_path):
    app = App(f"sqlite:///{tmp_path}/kit.db")
    tries: list[float] = []

    @app.step(retry=Retry(attempts=5, base=60))
    def flaky() -> None:
        tries.append(_clock.wall())
        raise ConnectionError("provider down")

    @app.saga()
    def call(ctx) -> None:
        flaky()

    with virtual_time(app):
        run = app.start(call)
        with pytest.raises(SagaCompensated):
            run.result()
        delays = [e.data for e in run.events if e.kind == "retry"]
    assert len(tries) == 5
    recorded = [json.loads(d)["delay"] for d in delays]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps == pytest.approx(recorded, abs=0.001)
    app.close()


def test_a_step_refused_past_its_deadline_fails_after_the_deadline_in_virtual_time(tmp_path):
    app = App(f"sqlite:///{tmp_path}/kit.db")
    with virtual_time(app) as clock:
        quota = RateLimiter("provider", 1, per=3600, clock=clock)  # one call an hour

        @app.step(rate_limit=quota, deadline=120)
        def notify(n: int) -> int:
            return n

        @app.saga()
        def twice(ctx) -> list[int]:
            return [notify(1), notify(2)]  # the second is refused for an hour

        run = app.start(twice)
        with pytest.raises(SagaCompensated) as outcome:
            run.result()
        assert isinstance(outcome.value.error, RateLimited)
        assert 120 <= clock.elapsed < 121
    app.close()


def test_advance_executes_timers_when_they_are_due_and_in_order(tmp_path):
    app = App(f"sqlite:///{tmp_path}/kit.db")
    woke: list[tuple[str, float]] = []

    @app.step()
    def note(name: str) -> None:
        woke.append((name, _clock.wall()))

    @app.saga()
    def timer(ctx, name: str, seconds: float) -> None:
        ctx.sleep(seconds)
        note(name)

    with virtual_time(app) as clock:
        start = clock()
        app.start(timer, "late", 300)
        app.start(timer, "early", 100)
        clock.advance(99)
        assert woke == []
        clock.advance(301)
        assert [name for name, _ in woke] == ["early", "late"]
        assert [round(at - start) for _, at in woke] == [100, 300]
        assert round(clock.elapsed) == 400
    app.close()


def test_awaiting_a_run_that_waits_for_a_signal_forever_says_so(tmp_path):
    app = App(f"sqlite:///{tmp_path}/kit.db")

    @app.saga()
    def forever(ctx) -> None:
        ctx.wait("approved")  # no timeout

    with virtual_time(app):
        run = app.start(forever)
        with pytest.raises(RunStuck, match="waiting for signal 'approved' with no timeout"):
            run.result()
    app.close()


def test_virtual_time_refuses_a_running_worker_and_a_launch_inside(tmp_path):
    app = App(f"sqlite:///{tmp_path}/kit.db", lease=3.0)
    with virtual_time(app) as clock:
        with pytest.raises(ConfigurationError, match="virtual time only moves forward"):
            clock.advance(-1)
        with pytest.raises(ConfigurationError, match="leave out `with app:`"):
            app.launch()
        with pytest.raises(ConfigurationError, match="one virtual clock at a time"):
            with virtual_time(app):
                pass
    with app:
        with pytest.raises(ConfigurationError, match="enter virtual_time before"):
            with virtual_time(app):
                pass
    app.close()


def test_the_real_clocks_are_back_after_virtual_time_even_when_the_block_raises(tmp_path):
    app, _ = checkout_app(f"sqlite:///{tmp_path}/kit.db")
    with pytest.raises(RuntimeError, match="test failed"):
        with virtual_time(app, start=time.time() - 3600):
            app.start("checkout", "cart-3").status  # noqa: B018  # a read under virtual time
            raise RuntimeError("test failed")
    assert _clock.wall is time.time and _clock.pause is ORIGINAL_PAUSE
    assert app.store.now() == pytest.approx(time.time(), abs=5)
    # A real worker on real time takes the run over from the virtual clock's execution.
    with app:
        run = app.runs()[0]
        app.signal(run.id, "customer_info", {"email": "b@example.com"})
        assert run.result(timeout=30)["email"] == "b@example.com"
    app.close()


# --- explore -----------------------------------------------------------------------------------
class Payments:
    """A payment provider's books: charges and refunds, deduplicated by idempotency key."""

    def __init__(self) -> None:
        self.charges: dict[str, int] = {}
        self.refunds: dict[str, int] = {}

    def charge(self, amount: int, key: str | None = None) -> str:
        charge_id = key or f"ch-{len(self.charges)}"
        self.charges.setdefault(charge_id, amount)
        return charge_id

    def refund(self, charge_id: str, key: str | None = None) -> None:
        self.refunds.setdefault(key or f"re-{len(self.refunds)}", self.charges[charge_id])


def shop(url: str, *, keyed_charge: bool, keyed_refund: bool, mail_fails: bool = False):
    """A checkout charging a card, then placing the order and mailing the customer; with
    `mail_fails` the mail step fails for good, so the charge is refunded."""
    app = App(url)
    books = Payments()
    orders: list[str] = []

    @app.step()
    def charge(order: str, amount: int) -> str:
        key = current_step().idempotency_key if keyed_charge else None
        return books.charge(amount, key=key)

    @charge.compensation
    def refund(order: str, amount: int, result: str | None = None) -> None:
        charge_id = result or (current_step().idempotency_key.removesuffix("/undo"))
        if charge_id in books.charges:  # nothing to undo if the charge never happened
            key = current_step().idempotency_key if keyed_refund else None
            books.refund(charge_id, key=key)

    @app.step()
    def place_order(order: str) -> None:
        if order not in orders:
            orders.append(order)

    @place_order.compensation
    def cancel_order(order: str) -> None:
        if order in orders:
            orders.remove(order)

    @app.step(retry=Retry(attempts=2, base=30))
    def mail(order: str) -> None:
        if mail_fails:
            raise ConnectionError("mail server down")

    @app.saga()
    def checkout(ctx, order: str, amount: int) -> str:
        charge_id = charge(order, amount)
        place_order(order)
        mail(order)
        return charge_id

    def setup() -> Payments:
        books.__init__()
        orders.clear()
        return books

    def invariant(run, books: Payments) -> None:
        charged = sum(books.charges.values())
        refunded = sum(books.refunds.values())
        assert charged <= 50, f"charged {charged} for an order of 50"
        assert refunded <= charged, f"refunded {refunded} of {charged}"
        if run.status == "succeeded":
            assert orders == ["o-1"] and charged == 50 and refunded == 0
        else:
            assert orders == [] and charged == refunded, f"{run.status}: kept {charged - refunded}"

    return app, checkout, setup, invariant


def test_explore_finds_a_double_charge_at_the_crash_between_effect_and_record(tmp_path):
    app, checkout, setup, invariant = shop(
        f"sqlite:///{tmp_path}/user.db", keyed_charge=False, keyed_refund=True
    )
    with pytest.raises(InvariantViolated) as found:
        explore(checkout, ("o-1", 50), invariant, app=app, setup=setup)
    point = found.value.point
    assert point.description == (
        "crash after step 'charge' ran but before its completion was recorded (attempt 1)"
    )
    assert point.status == "succeeded" and "charged 100 for an order of 50" in point.violation
    assert str(point.description) in str(found.value)
    assert _crashpoints.probe is None
    assert not (tmp_path / "user.db").exists()  # explore used stores of its own


def test_explore_passes_the_saga_that_charges_with_the_steps_idempotency_key(tmp_path):
    app, checkout, setup, invariant = shop(
        f"sqlite:///{tmp_path}/user.db", keyed_charge=True, keyed_refund=True
    )
    exploration = explore(checkout, ("o-1", 50), invariant, app=app, setup=setup)
    assert exploration.ok
    described = [p.description for p in exploration.points]
    assert described[:2] == [
        "crash after step 'charge' ran but before its completion was recorded (attempt 1)",
        "crash after the write that recorded step 'charge' done",
    ]
    assert (
        described[-1]
        == "crash after the write that recorded step 'mail' done and the run succeeded"
    )
    assert {p.status for p in exploration.points} == {"succeeded"}
    assert exploration.baseline.description == "no crash"
    assert "0 crash after step 'charge'" in str(exploration)


def test_explore_covers_the_compensations_and_finds_a_refund_made_twice(tmp_path):
    app, checkout, setup, invariant = shop(
        f"sqlite:///{tmp_path}/user.db", keyed_charge=True, keyed_refund=False, mail_fails=True
    )
    exploration = explore(
        checkout, ("o-1", 50), invariant, app=app, setup=setup, raise_on_violation=False
    )
    assert not exploration.ok
    broken = [p.description for p in exploration.violations]
    assert broken == [
        "crash after the compensation of step 'charge' ran but before its completion was "
        "recorded (attempt 1)"
    ]
    described = [p.description for p in exploration.points]
    assert (
        "crash after step 'mail' failed (attempt 2) but before its failure was recorded"
        in described
    )
    assert (
        "crash after the write that recorded step 'mail' failed and the run compensating"
        in described
    )
    assert (
        "crash after the write that recorded the compensation of step 'place_order' done"
        in described
    )
    assert exploration.baseline.status == "compensated" and exploration.baseline.held


def test_explore_passes_the_compensating_saga_with_keyed_refunds(tmp_path):
    app, checkout, setup, invariant = shop(
        f"sqlite:///{tmp_path}/user.db", keyed_charge=True, keyed_refund=True, mail_fails=True
    )
    exploration = explore(checkout, ("o-1", 50), invariant, app=app, setup=setup)
    assert exploration.ok and len(exploration.points) > 8
    assert {p.status for p in exploration.points} == {"compensated"}


def test_explore_recovers_runs_waiting_for_signals_and_reports_stuck_ones(tmp_path):
    app = App(f"sqlite:///{tmp_path}/user.db")

    @app.saga()
    def approval(ctx) -> str:
        return ctx.wait("approved")["by"]

    def invariant(run, state) -> None:
        assert run.result() == "ann"

    exploration = explore(approval, (), invariant, app=app, signals={"approved": {"by": "ann"}})
    assert exploration.ok and exploration.points
    with pytest.raises(InvariantViolated, match="waiting for signal 'approved'"):
        explore(approval, (), invariant, app=app)


def test_explore_refuses_arguments_that_are_not_a_tuple(tmp_path):
    app, checkout, _, invariant = shop(
        f"sqlite:///{tmp_path}/user.db", keyed_charge=True, keyed_refund=True
    )
    with pytest.raises(ConfigurationError, match=r"as a tuple, e.g. \(cart,\)"):
        explore(checkout, "o-1", invariant, app=app)


def test_the_crash_probe_is_idle_outside_explore_and_the_clock_real():
    assert _crashpoints.probe is None
    assert _clock.wall is time.time and _clock.pause is ORIGINAL_PAUSE
    stop = threading.Event()
    assert _clock.pause(stop, 0.0) is False


def test_explore_crashes_child_runs_and_fan_outs_too(tmp_path):
    app = App(f"sqlite:///{tmp_path}/user.db")
    synced: dict[str, int] = {}

    @app.step()
    def sync(tenant: int) -> int:
        synced.setdefault(current_step().idempotency_key, tenant)
        return tenant

    @app.saga()
    def tenant_sync(ctx, tenant: int) -> int:
        return sync(tenant)

    @app.saga()
    def nightly(ctx) -> int:
        inline = ctx.map(sync, [1, 2])
        children = ctx.map(tenant_sync, [3, 4])
        return sum(inline) + sum(children)

    def setup() -> dict[str, int]:
        synced.clear()
        return synced

    def each_synced_once(run, synced: dict[str, int]) -> None:
        assert run.result() == 10
        assert sorted(synced.values()) == [1, 2, 3, 4]

    exploration = explore(nightly, (), each_synced_once, app=app, setup=setup)
    described = [p.description for p in exploration.points]
    # The map writes its branches' completions in batches, as they come back.
    assert any(
        re.fullmatch(
            r"crash after the write that recorded step 'sync' done( x2)? and map 'sync' under way",
            told,
        )
        for told in described
    )
    assert (
        "crash after step 'sync' ran but before its completion was recorded (attempt 1) "
        "in a run of saga 'tenant_sync'" in described
    )
    assert "crash after the write that recorded the run waiting for its child runs" in described
