"""Rows as the store reads them back: a row that must exist, and a journal line without
result text, on both backends."""

import pytest

from sagaway import Permanent, SagaCompensated
from sagaway.store import open_store
from tests.conftest import wait_status


def test_a_statement_that_must_give_a_row_names_itself_when_it_gives_none(store_url):
    store = open_store(store_url)
    try:
        sql = "SELECT id FROM sagaway_runs WHERE id = 'no-such-run'"
        with pytest.raises(RuntimeError, match=r"no row from a statement .*no-such-run"):
            store._read(lambda cur: cur.only(sql))
        assert store._read(lambda cur: cur.one(sql)) is None
    finally:
        store.close()


def test_a_step_recorded_without_result_text_is_compensated_with_result_none(app):
    # Replay reads a completed step whose journal line holds no result text as None;
    # unwinding must read it the same way rather than fail on it.
    undone = []

    @app.step
    def hold(order):
        return "held"

    @hold.compensation
    def release(order, result="unset"):
        undone.append(result)

    @app.step
    def charge(order):
        raise Permanent("declined")

    @app.saga()
    def checkout(ctx, order):
        hold(order)
        ctx.wait("go", timeout=60)
        charge(order)

    with app:
        run = app.start(checkout, "o1")
        wait_status(run, "waiting")
        app.store._write(
            lambda cur: cur.execute(
                "UPDATE sagaway_journal SET result = NULL WHERE run_id = ? AND name = 'hold'",
                (run.id,),
            )
        )
        app.signal(run.id, "go", {})
        with pytest.raises(SagaCompensated):
            run.result(timeout=10)
    assert undone == [None]
