"""Outbound: a topic relayed to a broker by a consumer group of its own.

The relay is an ordinary consumer (`app.consumer`) whose handler returns only once the
broker confirmed the message, so the group's lease, inbox, retries and dead letters apply to
it as to any consumer: a message is marked handled only after the broker has it, and a
message whose confirmation was lost is sent again (with the same broker-side id)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from sagaway.engine._tracing import trace_headers
from sagaway.errors import ConfigurationError, MissingExtra
from sagaway.messaging._message import Message
from sagaway.resilience.retry import Retry

if TYPE_CHECKING:
    from sagaway.engine.app import App

__all__ = ["RELAY_RETRY", "RelayTarget", "encode_payload", "relay_to"]

# A relay fails almost only while its broker is unreachable: keep trying for minutes (about
# eight, backing off to 30 s) before a message goes to the relay group's dead letters.
RELAY_RETRY = Retry(attempts=40, base=0.2, cap=30.0)


def encode_payload(message: Message) -> bytes:
    """The message's payload as the JSON bytes a broker carries."""
    return json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False).encode()


class RelayTarget(ABC):
    """A broker destination a relay sends messages to, waiting for each confirmation.

    A target holds one connection, on an event loop thread of its own that starts with the
    first message; the relay's handler threads wait there for their confirmations. `close()`
    ends both (a later message opens them again).
    """

    kind: ClassVar[str]

    def __init__(self, name: str, timeout: float) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigurationError(
                f"{type(self).__name__}(timeout={timeout!r}): give the seconds to wait for the "
                "broker's confirmation, more than 0"
            )
        self.name = name
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connecting: asyncio.Lock | None = None

    @abstractmethod
    async def send(self, message: Message) -> None:
        """Publish `message` durably; return only after the broker confirmed it, raise
        otherwise (the relay group then retries it). Runs on the target's event loop."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Drop the connection (it is opened again by the next `send`)."""

    def deliver(self, message: Message) -> None:
        """`send` from any thread: block until the broker confirmed `message`; raise what
        `send` raised, or TimeoutError when connecting and confirming took over three
        `timeout`s."""
        future = asyncio.run_coroutine_threadsafe(self.send(message), self._event_loop())
        try:
            future.result(3 * self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(
                f"{self!r}: no confirmation of message {message.id} within {3 * self.timeout:g} s"
            ) from None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name=f"sagaway-relay-{self.name}", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def _connection_lock(self) -> asyncio.Lock:
        """Serialises (re)connecting: concurrent sends share one connection."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        return self._connecting

    def close(self) -> None:
        """Close the connection and stop the target's event loop."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._disconnect(), loop).result(self.timeout)
        except Exception:  # closing is best effort: the broker may be gone
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(self.timeout)
        if not loop.is_running():
            loop.close()
        self._connecting = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def relay_to(
    app: App,
    topic: str,
    target: RelayTarget,
    *,
    group: str | None = None,
    concurrency: int = 4,
    ordered: bool = True,
    retry: Retry | None = None,
) -> str:
    """Relay every message of `topic` to `target`, from the earliest retained one on;
    return the relay's consumer group (default `relay:<kind>:<target name>`).

    Each message is sent at least once and marked handled only after the broker confirmed
    it, with the message's W3C trace context in `traceparent` / `tracestate` headers; the
    broker-side id is the sagaway message id, so a re-send after a lost confirmation
    can be recognised (JetStream drops it in its dedup window; a sagaway inbound drops it by
    `dedup_id`). `ordered=True` keeps the topic's per-key order at the broker. `retry`
    (default `RELAY_RETRY`, about eight minutes) bounds the tries before a message goes to the
    group's dead letters (`app.redrive_dead_letters(group)` sends them again).
    """
    if not isinstance(target, RelayTarget):
        raise ConfigurationError(
            f"relay_to({topic!r}, {target!r}): the target is a RabbitMQRelay or a "
            "JetStreamRelay from sagaway.messaging.bridges"
        )
    name = group or f"relay:{target.kind}:{target.name}"

    def relay(message: Message) -> None:
        # The broker message continues this relay's span when traced, else the publisher's.
        traced = trace_headers(app.tracing.capture())
        target.deliver(dataclasses.replace(message, trace_headers=traced) if traced else message)

    relay.__qualname__ = f"relay_to({topic!r}, {target!r})"
    app.consumer(
        topic, group=name, concurrency=concurrency, retry=retry or RELAY_RETRY, ordered=ordered
    )(relay)
    return name


def missing_extra(client: str, exc: ImportError) -> MissingExtra:
    """The one-line error of a bridge whose broker client is not installed."""
    return MissingExtra("brokers", f"the {client} bridge", exc)


def header_text(value: Any) -> str | None:
    """A header value as text (brokers may hand bytes), or None when absent."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
