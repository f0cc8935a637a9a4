"""NATS JetStream through nats-py: a relay target that waits for the stream's ack and sets
`Nats-Msg-Id`, and a durable pull consumer as a source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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

__all__ = ["KEY_HEADER", "MSG_ID_HEADER", "TOPIC_HEADER", "JetStreamRelay", "JetStreamSource"]

MSG_ID_HEADER = "Nats-Msg-Id"
KEY_HEADER = "Sagaway-Key"
TOPIC_HEADER = "Sagaway-Topic"


def _nats() -> Any:
    try:
        import nats
        import nats.js.api
    except ImportError as exc:
        raise missing_extra("NATS JetStream", exc) from None
    return nats


async def _connect(url: str, timeout: float) -> Any:
    # No reconnecting inside the client: a lost connection fails what is under way at once
    # (the relay retries the message, the inbound connects again) instead of buffering.
    return await _nats().connect(url, allow_reconnect=False, connect_timeout=max(1, round(timeout)))


class JetStreamRelay(RelayTarget):
    """Publishes relayed messages to JetStream on `subject` (default: the message's topic),
    with `Nats-Msg-Id` = the sagaway id, so the stream's dedup window (2 minutes by default)
    drops a re-send; the key and topic go in the `Sagaway-Key` / `Sagaway-Topic` headers.
    Each publish waits for the stream's ack; a subject no stream takes is an error, retried.
    `stream` makes JetStream refuse the message unless that stream would store it."""

    kind = "jetstream"

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        subject: str | None = None,
        stream: str | None = None,
        name: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        _nats()
        super().__init__(name or stream or subject or "default", timeout)
        self.url, self.subject, self.stream = url, subject, stream
        self._client: Any = None
        self._js: Any = None
        self.duplicates = 0  # re-sends the stream recognised (and did not store again)

    async def send(self, message: Message) -> None:
        js = await self._open()
        headers = {MSG_ID_HEADER: message.id, TOPIC_HEADER: message.topic, **message.trace_headers}
        if message.key is not None:
            headers[KEY_HEADER] = message.key
        try:
            ack = await js.publish(
                self.subject or message.topic,
                encode_payload(message),
                timeout=self.timeout,
                stream=self.stream,
                headers=headers,
            )
        except Exception:
            await self._disconnect()
            raise
        if ack.duplicate:
            self.duplicates += 1

    async def _open(self) -> Any:
        async with self._connection_lock():
            if self._js is None or self._client.is_closed:
                await self._disconnect()
                client = await _connect(self.url, self.timeout)
                self._client, self._js = client, client.jetstream(timeout=self.timeout)
            return self._js

    async def _disconnect(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            await asyncio.wait_for(client.close(), self.timeout)


class JetStreamSource(Source):
    """Reads the durable pull consumer `durable` of `stream`, creating it when missing
    (explicit acks, every message from the first, only `subject` if given), `batch`
    messages per fetch. A message's `Nats-Msg-Id` header becomes the local `dedup_id` (else
    `<stream>:<stream sequence>`), its `Sagaway-Key` header the local key."""

    kind = "jetstream"

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str,
        durable: str,
        subject: str | None = None,
        batch: int = 64,
        ack_wait: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        _nats()
        for label, value in (("stream", stream), ("durable", durable)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"JetStreamSource({label}=...): give its name")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigurationError(
                f"JetStreamSource(batch={batch!r}): give a whole number, 1 or more"
            )
        self.url, self.stream, self.durable, self.subject = url, stream, durable, subject
        self.batch, self.ack_wait, self.timeout = batch, ack_wait, timeout
        self._client: Any = None

    async def receive(self) -> AsyncIterator[Delivery]:
        nats = _nats()
        self._client = client = await _connect(self.url, self.timeout)
        js = client.jetstream(timeout=self.timeout)
        try:
            await js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            api = nats.js.api
            await js.add_consumer(
                self.stream,
                api.ConsumerConfig(
                    name=self.durable,
                    durable_name=self.durable,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_policy=api.DeliverPolicy.ALL,
                    filter_subject=self.subject,
                    ack_wait=self.ack_wait,
                ),
            )
        subscription = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        while not client.is_closed:
            try:
                batch = await subscription.fetch(self.batch, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for msg in batch:
                headers = msg.headers or {}
                yield Delivery(
                    body=msg.data,
                    message_id=header_text(headers.get(MSG_ID_HEADER))
                    or f"{self.stream}:{msg.metadata.sequence.stream}",
                    key=header_text(headers.get(KEY_HEADER)),
                    trace_headers=headers,
                    ack=msg.ack_sync,
                    reject=msg.term,
                )
        raise ConnectionError(f"the connection to NATS reading {self.stream}/{self.durable} closed")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            await client.close()

    def __repr__(self) -> str:
        return f"JetStreamSource(stream={self.stream!r}, durable={self.durable!r})"
