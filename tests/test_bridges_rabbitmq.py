"""The RabbitMQ bridge against a real broker: relay with confirms, inbound through the inbox,
dedup of re-sends, and a broker restart in the middle of relaying."""

from __future__ import annotations

import json
import sys
import time

import pytest

from sagaway import Retry
from sagaway.errors import MissingExtra
from sagaway.messaging.bridges import RabbitMQRelay, RabbitMQSource, consume_from, relay_to
from sagaway.otel import instrument
from tests.brokers import (
    PATIENT,
    RABBITMQ_URL,
    collect,
    handled,
    rabbit_depth,
    rabbit_drain,
    rabbit_queue,
    rabbit_send,
    relay_across_restart,
    relay_targets_closed,  # noqa: F401 - an autouse fixture: every test closes its targets
    restart_rabbitmq,
    unique,
)
from tests.conftest import FAST, wait_for
from tests.tracing import Spans

# One worker runs them all: the restart test stops the broker every other test uses.
pytestmark = pytest.mark.xdist_group("rabbitmq")


def test_relay_publishes_each_message_persistent_with_its_id_once_confirmed(make_app):
    app = make_app()
    with rabbit_queue() as queue:
        group = relay_to(app, "orders.placed", RabbitMQRelay(RABBITMQ_URL, routing_key=queue))
        assert group == "relay:rabbitmq:default"
        with app:
            ids = [app.publish("orders.placed", {"n": n}, key=f"c{n % 2}") for n in range(6)]
            wait_for(lambda: handled(app, group) == 6, what="the relay")
        assert rabbit_depth(queue) == 6  # handled only after the broker had it
        taken = rabbit_drain(queue)
    by_id = {m.message_id: m for m in taken}
    assert sorted(by_id) == sorted(ids) and len(taken) == 6
    assert [json.loads(by_id[i].body) for i in ids] == [{"n": n} for n in range(6)]
    assert [by_id[i].headers["sagaway-key"] for i in ids] == [f"c{n % 2}" for n in range(6)]
    for key in ("c0", "c1"):  # per key, the queue has them in publish order
        queued = [m.message_id for m in taken if m.headers["sagaway-key"] == key]
        assert queued == [i for n, i in enumerate(ids) if f"c{n % 2}" == key]
    assert {m.delivery_mode.value for m in taken} == {2}  # persistent
    assert {m.headers["sagaway-topic"] for m in taken} == {"orders.placed"}
    assert {m.content_type for m in taken} == {"application/json"}


def test_inbound_publishes_locally_once_per_broker_id_and_acks_after_the_commit(make_app):
    app = make_app()
    seen = collect(app, "payments.received")
    with rabbit_queue() as queue:
        rabbit_send(
            queue,
            [
                ("pay-1", b'{"amount": 10}', {"sagaway-key": "cart-1"}),
                ("pay-2", b'{"amount": 20}', {}),
                ("pay-1", b'{"amount": 10}', {"sagaway-key": "cart-1"}),  # the broker re-sent
            ],
        )
        with (
            app,
            consume_from(
                app, RabbitMQSource(RABBITMQ_URL, queue=queue), "payments.received"
            ) as inbound,
        ):
            wait_for(lambda: inbound.received == 3, what="the three deliveries")
            wait_for(lambda: len(seen) == 2, what="the two messages")
            time.sleep(0.2)  # the duplicate does not arrive late
            assert rabbit_depth(queue) == 0  # every delivery acknowledged
    assert sorted((m.payload["amount"], m.key) for m in seen) == [(10, "cart-1"), (20, None)]
    assert len(seen) == 2


def test_a_resend_after_a_lost_confirm_reaches_the_broker_twice_and_the_inbound_once(make_app):
    class LosesFirstConfirm(RabbitMQRelay):
        lost = 0

        async def send(self, message):
            await super().send(message)
            if not self.lost:
                self.lost += 1
                raise ConnectionError("the confirm was lost")

    sender, receiver = make_app(), make_app()
    seen = collect(receiver, "orders.copied")
    with rabbit_queue() as queue:
        target = LosesFirstConfirm(RABBITMQ_URL, routing_key=queue)
        group = relay_to(sender, "orders.placed", target, retry=FAST)
        with sender:
            sent = sender.publish("orders.placed", {"order": 7})
            wait_for(lambda: handled(sender, group) == 1, what="the relay")
        assert rabbit_depth(queue) == 2  # RabbitMQ has no dedup: both copies are there
        source = RabbitMQSource(RABBITMQ_URL, queue=queue)
        with receiver, consume_from(receiver, source, "orders.copied") as inbound:
            wait_for(lambda: inbound.received == 2, what="both copies")
            wait_for(lambda: len(seen) == 1, what="the message")
            time.sleep(0.2)
    assert [m.payload for m in seen] == [{"order": 7}]
    copied = [t.messages for t in receiver.store.topics() if t.topic == "orders.copied"]
    assert copied == [1]
    assert target.lost == 1 and sent


def test_an_unroutable_message_is_retried_until_a_queue_takes_it(make_app):
    class CountsRefusals(RabbitMQRelay):
        refused = 0

        async def send(self, message):
            try:
                await super().send(message)
            except Exception:
                self.refused += 1
                raise

    app = make_app()
    name = unique("sagaway-test")
    target = CountsRefusals(RABBITMQ_URL, routing_key=name)
    group = relay_to(app, "orders.placed", target, retry=PATIENT)
    with app:
        app.publish("orders.placed", {"n": 1})
        wait_for(lambda: target.refused >= 2, what="tries the broker returned as unroutable")
        assert handled(app, group) == 0  # returned, not dropped
        with rabbit_queue(name) as queue:
            wait_for(lambda: handled(app, group) == 1, what="the relay")
            assert rabbit_depth(queue) == 1


def test_a_relay_to_a_missing_exchange_dead_letters_after_its_retries(make_app):
    app = make_app()
    exchange = unique("no-such-exchange")
    group = relay_to(
        app,
        "orders.placed",
        RabbitMQRelay(RABBITMQ_URL, exchange=exchange, timeout=5),
        retry=Retry(attempts=2, base=0.01, cap=0.01),
    )
    with app:
        app.publish("orders.placed", {"n": 1})
        dead = wait_for(lambda: app.dead_letters(group=group), what="the dead letter")
    assert dead[0].attempts == 2
    assert exchange in dead[0].error.message


def test_an_undecodable_message_is_rejected_at_the_broker_not_retried(make_app):
    app = make_app()
    seen = collect(app, "payments.received")
    with rabbit_queue() as queue:
        rabbit_send(queue, [("bad", b"not json", {}), ("good", b"[1]", {})])
        with (
            app,
            consume_from(
                app, RabbitMQSource(RABBITMQ_URL, queue=queue), "payments.received"
            ) as inbound,
        ):
            wait_for(lambda: inbound.received == 1, what="the good message acknowledged")
            wait_for(lambda: len(seen) == 1, what="the good message handled")
            assert inbound.rejected == 1
            assert rabbit_depth(queue) == 0
    assert seen[0].payload == [1]


def test_missing_client_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "aio_pika", None)
    with pytest.raises(MissingExtra, match=r"pip install 'sagaway\[brokers\]'"):
        RabbitMQRelay()
    with pytest.raises(MissingExtra, match=r"pip install 'sagaway\[brokers\]'"):
        RabbitMQSource(queue="q")


@pytest.mark.slow
def test_a_broker_restart_mid_relay_loses_nothing_and_delivers_each_message_once(make_app):
    sender, receiver = make_app(), make_app()
    seen = collect(receiver, "orders.copied")
    total = 120
    with rabbit_queue() as queue:
        group = relay_to(
            sender,
            "orders.placed",
            RabbitMQRelay(RABBITMQ_URL, routing_key=queue, timeout=3),
            retry=PATIENT,
        )
        source = RabbitMQSource(RABBITMQ_URL, queue=queue, timeout=3)
        with sender, receiver, consume_from(receiver, source, "orders.copied") as inbound:
            relay_across_restart(sender, group, seen, restart_rabbitmq, total)
    assert inbound.last_error is not None  # the restart did cut the bridge's connection
    numbers = sorted(m.payload["n"] for m in seen)
    assert numbers == list(range(total))  # none lost, none twice


def test_a_traceparent_header_carries_the_trace_to_the_broker_and_back(make_app):
    spans = Spans()
    app = make_app()
    instrument(app, spans.provider)
    seen = collect(app, "payments.received")
    with rabbit_queue() as out_queue, rabbit_queue() as in_queue:
        group = relay_to(app, "orders.placed", RabbitMQRelay(RABBITMQ_URL, routing_key=out_queue))
        remote = f"00-{'ab' * 16}-{'cd' * 8}-01"  # a producer elsewhere, traced
        rabbit_send(in_queue, [("pay-1", b'{"amount": 1}', {"traceparent": remote})])
        source = RabbitMQSource(RABBITMQ_URL, queue=in_queue)
        with app, consume_from(app, source, "payments.received"):
            with spans.tracer.start_as_current_span("POST /checkout") as caller:
                app.publish("orders.placed", {"n": 1})
            wait_for(lambda: handled(app, group) == 1 and seen, what="both ways")
        (sent,) = rabbit_drain(out_queue)
    # Out: the broker message continues the relay's span, in the caller's trace.
    relay = spans.one("process orders.placed")
    assert relay.context.trace_id == caller.get_span_context().trace_id
    version, trace_id, parent_id, _ = sent.headers["traceparent"].split("-")
    assert (version, trace_id) == ("00", f"{relay.context.trace_id:032x}")
    assert parent_id == f"{relay.context.span_id:016x}"
    # In: the local publish is a child of the remote producer, the handler a child of that.
    (message,) = seen
    assert message.trace_headers["traceparent"].split("-")[1] == "ab" * 16
    publish = spans.one("publish payments.received")
    (process,) = spans.wait("process payments.received")
    assert publish.parent.span_id == int("cd" * 8, 16)
    assert process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == int("ab" * 16, 16)
