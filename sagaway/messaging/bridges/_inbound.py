"""Inbound: a broker's queue or durable consumer read into a local topic.

Each broker message is published locally with `app.publish(topic, payload, key=...,
dedup_id=<broker message id>, trace_headers=<its headers>)` and acknowledged to the broker
only after that commit. The broker redelivers what was not acknowledged (a crash, a lost
connection), and the `dedup_id` makes the local topic keep one copy, so the topic's groups
get each message once through their inbox; a `traceparent` header carries its trace on."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sagaway.errors import ConfigurationError
from sagaway.messaging._outbox import new_message

if TYPE_CHECKING:
    from sagaway.engine.app import App

__all__ = ["Delivery", "Inbound", "Source", "consume_from"]

log = logging.getLogger("sagaway")

_BACKOFF = (0.2, 5.0)  # first and longest wait before connecting again


@dataclass(frozen=True)
class Delivery:
    """One broker message as an inbound bridge reads it.

    `message_id` becomes the local `dedup_id` (a redelivery is then stored once); `ack`
    acknowledges it to the broker, `reject` drops it there for good (it cannot be decoded:
    the broker's own dead-lettering, if configured, takes it).
    """

    body: bytes
    message_id: str | None
    key: str | None
    ack: Callable[[], Awaitable[Any]]
    reject: Callable[[], Awaitable[Any]]
    trace_headers: Mapping[str, Any] | None = None  # the broker message's headers


class Source(ABC):
    """A broker queue or durable consumer an `Inbound` reads."""

    kind = "broker"

    @abstractmethod
    def receive(self) -> AsyncIterator[Delivery]:
        """Connect and yield deliveries until the connection ends (then return or raise;
        the inbound connects again)."""

    @abstractmethod
    async def close(self) -> None:
        """Drop the connection, if any."""


def _decode_json(body: bytes) -> Any:
    return json.loads(body)


class Inbound:
    """Reads `source` into `topic` on a thread of its own while started.

    `start()` / `stop()`, or `with consume_from(...):`. `received` counts the messages
    published locally (duplicates included: they are acknowledged, and stored once), and
    `rejected` those dropped because `decode` failed. Connection failures are logged and
    retried with backoff; `last_error` keeps the most recent.
    """

    def __init__(
        self,
        app: App,
        source: Source,
        topic: str,
        decode: Callable[[bytes], Any] = _decode_json,
    ) -> None:
        new_message(topic, None)  # the same checks of the topic as publishing makes
        if not isinstance(source, Source):
            raise ConfigurationError(
                f"consume_from(source={source!r}): the source is a RabbitMQSource or a "
                "JetStreamSource from sagaway.messaging.bridges"
            )
        self.app, self.source, self.topic, self.decode = app, source, topic, decode
        self.received = 0
        self.rejected = 0
        self.last_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> Inbound:
        """Start reading (idempotent); returns self."""
        if self._thread is None:
            self._started.clear()
            self._thread = threading.Thread(
                target=self._thread_main, name=f"sagaway-inbound-{self.topic}", daemon=True
            )
            self._thread.start()
            self._started.wait(5.0)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading. A message published locally but not yet acknowledged is
        redelivered by the broker later, and stored once (its dedup id)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop finished meanwhile
                pass
        thread.join(timeout)

    def __enter__(self) -> Inbound:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the reading thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # --- the reading loop ----------------------------------------------------------------
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._run())
            self._started.set()
            try:
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            loop.run_until_complete(self._quietly(self.source.close()))
        finally:
            self._started.set()
            loop.close()

    async def _run(self) -> None:
        wait = _BACKOFF[0]
        while True:
            try:
                async for delivery in self.source.receive():
                    await self._take(delivery)
                    wait = _BACKOFF[0]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.last_error is None or type(exc) is not type(self.last_error):
                    log.warning(
                        "sagaway inbound %s -> %r: %s: %s; connecting again",
                        self.source.kind,
                        self.topic,
                        type(exc).__name__,
                        exc,
                    )
                self.last_error = exc
            await self._quietly(self.source.close())
            await asyncio.sleep(wait)
            wait = min(_BACKOFF[1], wait * 2)

    async def _take(self, delivery: Delivery) -> None:
        try:
            payload = self.decode(delivery.body)
            # The checks `publish` makes, made here: a bad message is rejected, not retried.
            new_message(self.topic, payload, key=delivery.key)
        except Exception as exc:
            log.warning(
                "sagaway inbound %s -> %r: message %s rejected, it cannot be published (%s: %s)",
                self.source.kind,
                self.topic,
                delivery.message_id,
                type(exc).__name__,
                exc,
            )
            await delivery.reject()
            self.rejected += 1
            return
        await self._publish(payload, delivery)
        await delivery.ack()
        self.received += 1

    async def _publish(self, payload: Any, delivery: Delivery) -> None:
        """Publish locally, waiting out a store that is unavailable (the delivery stays
        unacknowledged meanwhile, held by this connection)."""
        loop = asyncio.get_running_loop()
        wait = _BACKOFF[0]
        while True:
            try:
                await loop.run_in_executor(
                    None,
                    lambda: self.app.publish(
                        self.topic,
                        payload,
                        key=delivery.key,
                        dedup_id=delivery.message_id,
                        trace_headers=delivery.trace_headers,
                    ),
                )
                return
            except Exception as exc:
                self.last_error = exc
                log.warning(
                    "sagaway inbound %s -> %r: publishing locally failed (%s: %s); retrying",
                    self.source.kind,
                    self.topic,
                    type(exc).__name__,
                    exc,
                )
                await asyncio.sleep(wait)
                wait = min(_BACKOFF[1], wait * 2)

    @staticmethod
    async def _quietly(closing: Awaitable[Any]) -> None:
        try:
            await asyncio.wait_for(closing, 5.0)
        except Exception:  # the connection is already gone
            pass


def consume_from(
    app: App, source: Source, topic: str, *, decode: Callable[[bytes], Any] | None = None
) -> Inbound:
    """An `Inbound` reading `source` into `topic` (not started: `start()` it or use it as a
    context manager). `decode` turns a body into the payload (default: JSON); a message it
    cannot decode is rejected at the broker."""
    return Inbound(app, source, topic, decode or _decode_json)
