"""The NATS JetStream bridge against a real server: relay with the stream's ack and
Nats-Msg-Id, inbound through the inbox, dedup on both sides, a server restart mid-relay."""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import pytest

from sagaway.errors import MissingExtra
from sagaway.messaging.bridges import JetStreamRelay, JetStreamSource, consume_from, relay_to
from sagaway.otel import instrument
from tests.brokers import (
    NATS_URL,
    PATIENT,
    PrivateNats,
    collect,
    handled,
    jetstream_messages,
    jetstream_publish,
    jetstream_stream,
    relay_across_restart,
    relay_targets_closed,  # noqa: F401 - an autouse fixture: every test closes its targets
)
from tests.conftest import FAST, wait_for
from tests.tracing import Spans

pytestmark = pytest.mark.xdist_group("nats")


def test_relay_sets_nats_msg_id_and_returns_after_the_stream_acked(make_app):
    app = make_app()
    with jetstream_stream() as (stream, prefix):
        target = JetStreamRelay(NATS_URL, subject=f"{prefix}.orders", stream=stream)
        group = relay_to(app, "orders.placed", target)
        assert group == f"relay:jetstream:{stream}"
        with app:
            ids = [app.publish("orders.placed", {"n": n}, key=f"c{n % 2}") for n in range(5)]
            wait_for(lambda: handled(app, group) == 5, what="the relay")
        target.close()
        stored = jetstream_messages(stream)  # handled only after the stream had it
    by_id = {m.headers["Nats-Msg-Id"]: m for m in stored}
    assert sorted(by_id) == sorted(ids) and len(stored) == 5
    assert [json.loads(by_id[i].data) for i in ids] == [{"n": n} for n in range(5)]
    assert [by_id[i].headers["Sagaway-Key"] for i in ids] == [f"c{n % 2}" for n in range(5)]
    for key in ("c0", "c1"):  # per key, the stream has them in publish order
        in_stream = [m.headers["Nats-Msg-Id"] for m in stored if m.headers["Sagaway-Key"] == key]
        assert in_stream == [i for n, i in enumerate(ids) if f"c{n % 2}" == key]
    assert {m.headers["Sagaway-Topic"] for m in stored} == {"orders.placed"}


def test_a_resend_after_a_lost_ack_is_dropped_by_the_stream(make_app):
    class LosesFirstAck(JetStreamRelay):
        lost = 0

        async def send(self, message):
            await super().send(message)
            if not self.lost:
                self.lost += 1
                raise ConnectionError("the ack was lost")

    app = make_app()
    with jetstream_stream() as (stream, prefix):
        target = LosesFirstAck(NATS_URL, subject=f"{prefix}.orders")
        group = relay_to(app, "orders.placed", target, retry=FAST)
        with app:
            sent = app.publish("orders.placed", {"order": 7})
            wait_for(lambda: handled(app, group) == 1, what="the relay")
        target.close()
        stored = jetstream_messages(stream)
    assert target.lost == 1 and target.duplicates == 1  # sent twice, stored once
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [sent]


def test_inbound_publishes_locally_with_the_msg_id_and_acks_after_the_commit(make_app):
    app = make_app()
    seen = collect(app, "payments.received")
    with jetstream_stream() as (stream, prefix):
        jetstream_publish(
            prefix,
            [
                ("pay", b'{"amount": 10}', {"Nats-Msg-Id": "pay-1", "Sagaway-Key": "cart-1"}),
                ("pay", b'{"amount": 20}', {}),  # no id: the stream sequence stands in
            ],
        )
        source = JetStreamSource(NATS_URL, stream=stream, durable="shop")
        with app, consume_from(app, source, "payments.received") as inbound:
            wait_for(lambda: inbound.received == 2, what="both messages acknowledged")
            wait_for(lambda: len(seen) == 2, what="both messages handled")
        # Read again from the start by a new durable: everything is a redelivery now.
        again = JetStreamSource(NATS_URL, stream=stream, durable="replay")
        with app, consume_from(app, again, "payments.received") as inbound:
            wait_for(lambda: inbound.received == 2, what="the redeliveries")
            time.sleep(0.2)
    assert sorted((m.payload["amount"], m.key) for m in seen) == [(10, "cart-1"), (20, None)]
    assert len(seen) == 2  # the inbox: each broker id once


def test_a_lost_inbound_ack_is_redelivered_by_jetstream_and_stored_once(make_app):
    class LosesFirstAck(JetStreamSource):
        lost = 0

        async def receive(self):
            async for delivery in super().receive():
                if not self.lost:
                    self.lost += 1

                    async def nothing():
                        return None

                    delivery = dataclasses.replace(delivery, ack=nothing)
                yield delivery

    app = make_app()
    seen = collect(app, "payments.received")
    with jetstream_stream() as (stream, prefix):
        jetstream_publish(prefix, [("pay", b'{"amount": 10}', {"Nats-Msg-Id": "pay-1"})])
        source = LosesFirstAck(NATS_URL, stream=stream, durable="shop", ack_wait=1.0)
        with app, consume_from(app, source, "payments.received") as inbound:
            wait_for(lambda: inbound.received == 2, what="JetStream to redeliver", timeout=20)
            wait_for(lambda: len(seen) == 1, what="the message")
            time.sleep(0.2)
    assert len(seen) == 1 and source.lost == 1


def test_missing_client_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nats", None)
    with pytest.raises(MissingExtra, match=r"pip install 'sagaway\[brokers\]'"):
        JetStreamRelay()
    with pytest.raises(MissingExtra, match=r"pip install 'sagaway\[brokers\]'"):
        JetStreamSource(stream="S", durable="d")


@pytest.mark.slow
def test_a_server_restart_mid_relay_loses_nothing_and_delivers_each_message_once(
    make_app, tmp_path
):
    server = PrivateNats(tmp_path / "jetstream")
    server.start()
    try:
        sender, receiver = make_app(), make_app()
        seen = collect(receiver, "orders.copied")
        total = 120
        with jetstream_stream(server.url) as (stream, prefix):
            target = JetStreamRelay(server.url, subject=f"{prefix}.orders", timeout=2)
            group = relay_to(sender, "orders.placed", target, retry=PATIENT)
            source = JetStreamSource(
                server.url, stream=stream, durable="copy", timeout=2, ack_wait=2.0
            )
            with sender, receiver, consume_from(receiver, source, "orders.copied") as inbound:
                relay_across_restart(sender, group, seen, server.restart, total)
            target.close()
            stored = jetstream_messages(stream, server.url)
    finally:
        server.stop()
    assert inbound.last_error is not None  # the restart did cut the bridge's connection
    assert sorted(m.payload["n"] for m in seen) == list(range(total))  # none lost, none twice
    ids = [m.headers["Nats-Msg-Id"] for m in stored]
    assert len(ids) == len(set(ids)) == total  # re-sends dropped by Nats-Msg-Id


def test_a_traceparent_header_carries_the_trace_to_the_stream_and_back(make_app):
    spans = Spans()
    app = make_app()
    instrument(app, spans.provider)
    seen = collect(app, "payments.received")
    with jetstream_stream() as (stream, prefix):
        target = JetStreamRelay(NATS_URL, subject=f"{prefix}.orders", stream=stream)
        group = relay_to(app, "orders.placed", target)
        remote = f"00-{'ab' * 16}-{'cd' * 8}-01"  # a producer elsewhere, traced
        jetstream_publish(prefix, [("pay", b'{"amount": 1}', {"traceparent": remote})])
        source = JetStreamSource(NATS_URL, stream=stream, durable="shop", subject=f"{prefix}.pay")
        with app, consume_from(app, source, "payments.received"):
            with spans.tracer.start_as_current_span("POST /checkout") as caller:
                app.publish("orders.placed", {"n": 1})
            wait_for(lambda: handled(app, group) == 1 and seen, what="both ways")
        target.close()
        (sent,) = [m for m in jetstream_messages(stream) if m.subject.endswith(".orders")]
    relay = spans.one("process orders.placed")
    assert relay.context.trace_id == caller.get_span_context().trace_id
    version, trace_id, parent_id, _ = sent.headers["traceparent"].split("-")
    assert (version, trace_id) == ("00", f"{relay.context.trace_id:032x}")
    assert parent_id == f"{relay.context.span_id:016x}"
    (message,) = seen
    assert message.trace_headers["traceparent"].split("-")[1] == "ab" * 16
    publish = spans.one("publish payments.received")
    (process,) = spans.wait("process payments.received")
    assert publish.parent.span_id == int("cd" * 8, 16)
    assert process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == int("ab" * 16, 16)
