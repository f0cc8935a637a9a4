"""Bridges between sagaway topics and an existing broker: RabbitMQ (aio-pika) and NATS
JetStream (nats-py), installed with `pip install 'sagaway[brokers]'`.

Outbound, `relay_to(app, topic, target)` declares a consumer group of the topic
(`relay:<kind>:<name>`) whose handler returns only once the broker confirmed the message:
the group's inbox, retries and dead letters apply to the relay as to any consumer. The
broker-side id is the sagaway message id (`message_id` on RabbitMQ, `Nats-Msg-Id` on
JetStream).

Inbound, `consume_from(app, source, topic)` reads a RabbitMQ queue or a JetStream durable
consumer, publishes each message locally with the broker's message id as `dedup_id`, and
acknowledges it to the broker only after that commit: a redelivery is stored once.

    rabbit = RabbitMQRelay("amqp://guest:guest@127.0.0.1:5672/", exchange="shop")
    relay_to(app, "orders.placed", rabbit)
    with consume_from(app, JetStreamSource(stream="PAYMENTS", durable="shop"), "payments"):
        ...

See docs/bridges.md.
"""

from sagaway.messaging.bridges._inbound import Delivery, Inbound, Source, consume_from
from sagaway.messaging.bridges._nats import JetStreamRelay, JetStreamSource
from sagaway.messaging.bridges._rabbitmq import RabbitMQRelay, RabbitMQSource
from sagaway.messaging.bridges._relay import RELAY_RETRY, RelayTarget, relay_to

__all__ = [
    "RELAY_RETRY",
    "Delivery",
    "Inbound",
    "JetStreamRelay",
    "JetStreamSource",
    "RabbitMQRelay",
    "RabbitMQSource",
    "RelayTarget",
    "Source",
    "consume_from",
    "relay_to",
]
