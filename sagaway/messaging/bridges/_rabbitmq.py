"""RabbitMQ through aio-pika: a relay target with publisher confirms, and a queue source."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sagaway.errors import ConfigurationError
from sagaway.messaging._message import Message
from sagaway.messaging.bridges._inbound import Delivery, Source
from sagaway.messaging.bridges._relay import (
    RelayTarget,
    encode_payload,
    header_text,
    missing_extra,
)

__all__ = ["KEY_HEADER", "TOPIC_HEADER", "RabbitMQRelay", "RabbitMQSource"]

KEY_HEADER = "sagaway-key"
TOPIC_HEADER = "sagaway-topic"


def _aio_pika() -> Any:
    try:
        import aio_pika
        import aio_pika.exceptions
    except ImportError as exc:
        raise missing_extra("RabbitMQ", exc) from None
    return aio_pika


class RabbitMQRelay(RelayTarget):
    """Publishes relayed messages to `exchange` (default: the default exchange, which routes
    to the queue named by the routing key) with routing key `routing_key` (default: the
    message's topic), persistent, `message_id` = the sagaway id, the key and topic in the
    `sagaway-key` / `sagaway-topic` headers. Each publish waits for the broker's confirm;
    an unroutable message (no queue bound) is an error, retried, never dropped silently.
    The exchange must exist (it is not declared here)."""

    kind = "rabbitmq"

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        exchange: str = "",
        routing_key: str | None = None,
        name: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        _aio_pika()
        super().__init__(name or exchange or "default", timeout)
        self.url, self.exchange, self.routing_key = url, exchange, routing_key
        self._connection: Any = None
        self._exchange: Any = None

    async def send(self, message: Message) -> None:
        aio_pika = _aio_pika()
        exchange = await self._open()
        headers: dict[str, Any] = {TOPIC_HEADER: message.topic, **message.trace_headers}
        if message.key is not None:
            headers[KEY_HEADER] = message.key
        outgoing = aio_pika.Message(
            encode_payload(message),
            message_id=message.id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            timestamp=datetime.fromtimestamp(message.published_at, UTC),
            headers=headers,
        )
        try:
            await exchange.publish(
                outgoing,
                routing_key=self.routing_key or message.topic,
                mandatory=True,
                timeout=self.timeout,
            )
        except aio_pika.exceptions.DeliveryError:
            raise  # returned (unroutable) or nacked: the channel is fine, the message is not
        except Exception:
            # A channel RabbitMQ closed (unknown exchange) or a lost confirm: start afresh.
            await self._disconnect()
            raise

    async def _open(self) -> Any:
        async with self._connection_lock():
            if self._exchange is None or self._connection.is_closed:
                await self._disconnect()
                connection = await _aio_pika().connect(self.url, timeout=self.timeout)
                try:
                    channel = await connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    exchange = (
                        channel.default_exchange
                        if not self.exchange
                        else await channel.get_exchange(self.exchange, ensure=False)
                    )
                except BaseException:
                    await connection.close()
                    raise
                self._connection, self._exchange = connection, exchange
            return self._exchange

    async def _disconnect(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None and not connection.is_closed:
            await asyncio.wait_for(connection.close(), self.timeout)


class RabbitMQSource(Source):
    """Reads the existing queue `queue`, at most `prefetch` unacknowledged messages at a
    time. A message's `message_id` becomes the local `dedup_id` (a message without one is
    published without: redeliveries of it are not recognised) and its `sagaway-key` header
    the local key."""

    kind = "rabbitmq"

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        queue: str,
        prefetch: int = 64,
        timeout: float = 10.0,
    ) -> None:
        _aio_pika()
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError("RabbitMQSource(queue=...): name the queue to read")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ConfigurationError(
                f"RabbitMQSource(prefetch={prefetch!r}): give a whole number, 1 or more"
            )
        self.url, self.queue, self.prefetch, self.timeout = url, queue, prefetch, timeout
        self._connection: Any = None

    async def receive(self) -> AsyncIterator[Delivery]:
        aio_pika = _aio_pika()
        self._connection = await aio_pika.connect(self.url, timeout=self.timeout)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        queue = await channel.get_queue(self.queue, ensure=True)
        async with queue.iterator() as messages:
            async for incoming in messages:
                yield Delivery(
                    body=incoming.body,
                    message_id=incoming.message_id,
                    key=header_text((incoming.headers or {}).get(KEY_HEADER)),
                    trace_headers=incoming.headers,
                    ack=incoming.ack,
                    reject=functools.partial(incoming.reject, requeue=False),
                )
        # The iterator ends when the channel closes (a broker restart): connect again.
        raise ConnectionError(f"RabbitMQ closed the channel reading queue {self.queue!r}")

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()

    def __repr__(self) -> str:
        return f"RabbitMQSource(queue={self.queue!r})"
