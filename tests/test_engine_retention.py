"""Deleting runs that ended long ago (`App.prune_runs`, `sagaway runs prune`), on both
backends: only ended runs of the statuses asked for, with everything recorded about them."""

import threading
import time
from contextlib import closing

import pytest

from sagaway import App, ConfigurationError, Permanent, RunNotFound, SagaCompensated, SagaFailed
from tests.conftest import FAST, POSTGRES_URL, postgres_schema, wait_status


def declare(app):
    @app.step
    def reserve(n):
        return n

    @reserve.compensation
    def release(n):
        pass

    @app.step(pivot=True)
    def charge(n):
        if n == "declined":
            raise Permanent("card declined")
        return n

    @app.step
    def ship(n):
        if n == "lost":
            raise Permanent("parcel lost")
        return n

    @app.saga()
    def checkout(ctx, n, wait=False):
        reserve(n)
        if wait:
            ctx.wait("confirm", timeout=3600)
        charge(n)
        return ship(n)

    return checkout


def signals(app, run_id):
    return app.store._read(
        lambda cur: cur.one("SELECT COUNT(*) FROM sagaway_signals WHERE run_id = ?", (run_id,))
    )[0]


def finished(app, checkout, n, key=None):
    run = app.start(checkout, n, key=key)
    try:
        run.result(timeout=10)
    except (SagaCompensated, SagaFailed):
        pass
    return run


def test_prune_deletes_ended_runs_of_the_statuses_asked_for_and_everything_about_them(app):
    checkout = declare(app)
    with app:
        ok = finished(app, checkout, "fine", key="cart-1")
        compensated = finished(app, checkout, "declined")
        failed = finished(app, checkout, "lost")
        waiting = app.start(checkout, "slow", True)
        confirmed = app.start(checkout, "confirmed", True)
        wait_status(confirmed, "waiting")
        app.signal(confirmed.id, "confirm", {"ok": True})
        assert confirmed.result(timeout=10) == "confirmed"
        assert signals(app, confirmed.id) == 1
        wait_status(waiting, "waiting")
        assert [r.refresh().status for r in (ok, compensated, failed)] == [
            "succeeded",
            "compensated",
            "failed",
        ]
        assert app.store.events(compensated.id)  # the unwinding left events to delete

        assert app.prune_runs(3600) == 0  # all ended a moment ago
        assert app.prune_runs(0) == 3
        for gone in (ok, compensated, confirmed):
            assert app.store.get_run(gone.id) is None
            assert app.store.journal(gone.id) == []
            assert app.store.events(gone.id) == []
            assert signals(app, gone.id) == 0
        # Failed runs wait for a redrive; runs that have not ended are never touched.
        assert app.store.get_run(failed.id).status == "failed"
        assert app.store.get_run(waiting.id).status == "waiting"
        assert len(app.store.journal(failed.id)) == 3

        # The key of a pruned run is free again.
        again = app.start(checkout, "fine", key="cart-1")
        assert again.id != ok.id
        assert again.result(timeout=10) == "fine"

        app.signal(failed.id, "confirm", {"late": True})  # failed runs still take signals
        assert signals(app, failed.id) == 1
        assert app.prune_runs(0, statuses=["failed"]) == 1
        assert app.store.get_run(failed.id) is None
        assert signals(app, failed.id) == 0
        assert app.store.get_run(waiting.id).status == "waiting"


def test_prune_refuses_statuses_of_runs_that_have_not_ended_and_leaves_the_store_alone(app):
    checkout = declare(app)
    with app:
        run = finished(app, checkout, "fine")
        for bad in (["running"], ["succeeded", "waiting"], []):
            with pytest.raises(ConfigurationError, match=r"runs that have not ended are never"):
                app.prune_runs(0, statuses=bad)
        with pytest.raises(ConfigurationError, match=r"older_than=-1.*0 or more"):
            app.prune_runs(-1)
        assert app.store.get_run(run.id).status == "succeeded"


def test_prune_works_through_many_runs_a_batch_per_transaction(make_app):
    app = make_app(record_metrics=False)

    @app.step
    def noop(n):
        return n

    @app.saga()
    def tiny(ctx, n):
        return noop(n)

    with app:
        runs = [app.start(tiny, n) for n in range(1201)]
        for run in runs:
            run.result(timeout=30)
    time.sleep(0.01)
    before = app.store.commit_stats[0]  # the worker has stopped: nothing else writes
    assert app.prune_runs(0) == 1201
    # 500 + 500 + 201, and one that finds nothing left.
    assert app.store.commit_stats[0] - before == 4
    assert app.store.count_runs().get("succeeded", 0) == 0


@pytest.mark.postgres
def test_postgres_a_signal_racing_a_prune_of_its_run_is_refused_and_leaves_nothing():
    with postgres_schema() as url, closing(App(url, record_metrics=False, retry=FAST)) as app:
        checkout = declare(app)
        with app:
            run = finished(app, checkout, "lost")  # failed: it would take a signal
        import psycopg

        outcome = []
        with psycopg.connect(POSTGRES_URL) as pruner:
            pruner.execute(f'SET search_path TO "{app.store.settings.schema}"')
            # A prune half done: the run locked and deleted, not yet committed.
            pruner.execute("SELECT id FROM sagaway_runs WHERE id = %s FOR UPDATE", (run.id,))
            pruner.execute("DELETE FROM sagaway_journal WHERE run_id = %s", (run.id,))
            pruner.execute("DELETE FROM sagaway_runs WHERE id = %s", (run.id,))

            def send():
                try:
                    app.signal(run.id, "confirm", {})
                    outcome.append("sent")
                except RunNotFound:
                    outcome.append("not found")

            sender = threading.Thread(target=send)
            sender.start()
            time.sleep(0.3)
            assert outcome == []  # the signal waits for the run's lock
            pruner.commit()
            sender.join(10)
        assert outcome == ["not found"]
        assert signals(app, run.id) == 0
