"""A step's messages in its checkpoint: stored iff the fence holds, in publish order, handed
to every group of the topic, once however often the checkpoint is sent; on PostgreSQL in the
checkpoint's one statement (publishing adds no round trip)."""

from __future__ import annotations

import threading
import time

import pytest

from sagaway import LeaseLost
from sagaway.messaging._outbox import new_message
from sagaway.store import open_store
from sagaway.store._sql_core import Statement
from sagaway.store.base import Checkpoint, JournalEntry, NewRun
from tests.conftest import postgres_schema


@pytest.fixture
def store(store_url):
    store = open_store(store_url)
    yield store
    store.close()


def claimed_run(store, name="r1"):
    now = time.time()
    run, _ = store.create_run(NewRun(name, "s", None, "{}", "h", now), "w", now + 30)
    return run


def step_checkpoint(run, epoch, messages):
    now = time.time()
    entry = JournalEntry(0, 0, "step", "place", "ok", None, '"ok"', None, 1, now, now)
    return Checkpoint(run.id, epoch, now, None, [entry], messages=messages)


def spy_writes(store):
    """The list every write `store` is given from now on goes to."""
    written = []
    write = store._write

    def spy(work):
        written.append(work)
        return write(work)

    store._write = spy
    return written


def orders(run, count, key="cart-1"):
    return [
        new_message("orders.placed", {"n": n}, key=key, origin=f"{run.id}:0:{n}")
        for n in range(count)
    ]


def test_a_checkpoint_stores_its_messages_in_order_for_every_group(store):
    store.register_group("mailer", "orders.placed", time.time())
    store.register_group("stock", "orders.placed", time.time())
    run = claimed_run(store)
    messages = orders(run, 3)
    assert store.checkpoint(step_checkpoint(run, run.epoch, messages)) is False
    for group in ("mailer", "stock"):
        claimed = store.claim_messages(group, "c", 10, time.time(), time.time() + 30, True)
        assert [c.message.id for c in claimed] == [messages[0].id]  # FIFO per key
        everything = store.claim_messages(group, "c", 10, time.time(), time.time() + 30, False)
        assert [c.message.id for c in claimed + everything] == [m.id for m in messages]
    assert [(t.topic, t.messages) for t in store.topics()] == [("orders.placed", 3)]
    assert len(store.journal(run.id)) == 1


def test_a_fenced_out_checkpoint_publishes_nothing(store):
    store.register_group("mailer", "orders.placed", time.time())
    run = claimed_run(store)
    with pytest.raises(LeaseLost):
        store.checkpoint(step_checkpoint(run, run.epoch + 1, orders(run, 2)))
    assert store.topics()[0].messages == 0
    assert store.journal(run.id) == []


def test_a_checkpoint_sent_again_stores_its_messages_once(store):
    store.register_group("mailer", "orders.placed", time.time())
    run = claimed_run(store)
    messages = orders(run, 2)
    store.checkpoint(step_checkpoint(run, run.epoch, messages))
    store.checkpoint(step_checkpoint(run, run.epoch, messages))
    assert store.topics()[0].messages == 2
    assert store.groups()[0].ready == 2


@pytest.mark.postgres
def test_a_checkpoint_with_messages_is_one_statement_on_postgres():
    with postgres_schema() as url:
        store = open_store(url)
        try:
            run = claimed_run(store)
            written = spy_writes(store)
            store.checkpoint(step_checkpoint(run, run.epoch, orders(run, 2)))
            assert len(written) == 1 and isinstance(written[0], Statement)
            assert store.topics()[0].messages == 2
        finally:
            store.close()


@pytest.mark.postgres
def test_publishing_claiming_and_settling_are_one_statement_each_on_postgres():
    with postgres_schema() as url:
        store = open_store(url)
        try:
            store.register_group("mailer", "orders.placed", time.time())
            written = spy_writes(store)
            first, second = (new_message("orders.placed", {"n": n}, key="k") for n in range(2))
            assert store.publish([first, second]) == [True, True]
            assert store.publish([first]) == [False]  # its id is already stored
            now = time.time()
            claimed = store.claim_messages("mailer", "c", 10, now, now + 30, True)
            assert [c.message.id for c in claimed] == [first.id]  # FIFO per key
            assert claimed[0].message.payload == '{"n":0}' and claimed[0].attempt == 1
            assert store.settle_message("mailer", first.id, claimed[0].epoch, now, "handled")
            stale = claimed[0].epoch - 1
            assert not store.settle_message("mailer", first.id, stale, now, "handled")  # fenced
            assert all(isinstance(work, Statement) for work in written), written
            assert len(written) == 5
        finally:
            store.close()


@pytest.mark.postgres
def test_a_publish_or_checkpoint_that_delivers_wakes_listeners_on_postgres():
    with postgres_schema() as url:
        store = open_store(url)
        woken = threading.Event()
        stop = store.on_wake(woken.set)
        try:
            store.register_group("mailer", "orders.placed", time.time())
            time.sleep(0.2)  # the listener is listening
            woken.clear()
            store.publish([new_message("orders.placed", {"n": 1})])
            assert woken.wait(10), "no wake-up after a publish delivered to a group"
            woken.clear()
            run = claimed_run(store)
            store.checkpoint(step_checkpoint(run, run.epoch, orders(run, 1)))
            assert woken.wait(10), "no wake-up after a checkpoint delivered to a group"
        finally:
            if stop is not None:
                stop()
            store.close()
