"""The messaging half of `App`'s public surface (publish, consumers, subscriptions, dead
letters): thin calls into `sagaway.messaging`, kept apart so that app.py stays readable."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sagaway.engine._tracing import trace_text
from sagaway.messaging._hub import Messaging
from sagaway.messaging._message import DeadLetter
from sagaway.resilience.breaker import CircuitBreaker
from sagaway.resilience.bulkhead import Bulkhead
from sagaway.resilience.ratelimit import RateLimiter
from sagaway.resilience.retry import Retry

if TYPE_CHECKING:
    from sagaway.engine.definitions import SagaDefinition
    from sagaway.engine.run import Run

__all__ = ["MessagingSurface"]

F = TypeVar("F", bound=Callable[..., Any])


class MessagingSurface:
    """`App`'s messaging methods (see docs/messaging.md)."""

    _messaging: Messaging

    if TYPE_CHECKING:  # provided by App

        def _saga_name(self, saga: SagaDefinition | str) -> str: ...

        def start(
            self, saga: SagaDefinition | str, *args: Any, key: str | None = None, **kwargs: Any
        ) -> Run: ...

    def publish(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
        delay: float | None = None,
        dedup_id: str | None = None,
        conn: Any = None,
        trace_headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Publish a message to `topic` outside a saga; return its id.

        Every consumer group of the topic receives it. With `conn` (a psycopg connection on
        this App's PostgreSQL database, or a sqlite3 connection on its file), the message is
        written in the caller's open transaction and commits or rolls back with it. `key`
        orders messages for `ordered=True` consumers; `delay` holds it back that many
        seconds; `dedup_id` keeps at most one message per (topic, dedup_id) while it is
        retained. Raises ConfigurationError or SerializationError for bad input, storing
        nothing. Inside a step, use `current_step().publish(...)` instead: the message then
        commits with the step's completion. `trace_headers` (W3C `traceparent`, `tracestate`,
        e.g. a broker message's headers) is the trace the message continues; by default,
        with tracing on, the caller's current one.
        """
        return self._messaging.publish(
            topic, payload, key, delay, dedup_id, conn, trace_text(trace_headers)
        )

    def consumer(
        self,
        topic: str,
        *,
        group: str,
        concurrency: int = 4,
        retry: Retry | None = None,
        ordered: bool = False,
        timeout: float | None = None,
        breaker: CircuitBreaker | None = None,
        rate_limit: RateLimiter | None = None,
        bulkhead: Bulkhead | None = None,
    ) -> Callable[[F], F]:
        """Declare `fn(message)` the handler of `group`'s messages of `topic`.

        The group receives every message of the topic, those published before it first ran
        included; each is handled at least once, by one consumer at a time, on up to
        `concurrency` threads per worker process. A try that raises is retried by `retry`
        (default `Retry(attempts=5, base=0.5, cap=60)`), then the message goes to the
        group's dead letters. A message the group handled is never handed to it again.
        `ordered=True`: FIFO per message key (a message waiting for a retry or its delay
        holds back later ones of its key). `breaker`, `rate_limit` and `bulkhead` park a
        refused message without spending a try. Returns `fn` unchanged.
        """

        def declare(fn: F) -> F:
            self._messaging.declare(
                topic,
                fn,
                group=group,
                concurrency=concurrency,
                retry=retry or Retry(attempts=5, base=0.5, cap=60.0),
                ordered=ordered,
                timeout=timeout,
                breaker=breaker,
                rate_limit=rate_limit,
                bulkhead=bulkhead,
            )
            return fn

        return declare

    def subscribe(
        self,
        topic: str,
        saga: SagaDefinition | str,
        *,
        group: str | None = None,
        concurrency: int = 4,
    ) -> None:
        """Start one run of `saga` per message of `topic`, with the message's payload as its
        one argument and the message's id as the run's key (so a message handed over again
        never starts a second run). `group` defaults to the saga's name."""
        name = self._saga_name(saga)

        def start_run(message: Any) -> None:
            self.start(name, message.payload, key=message.id)

        start_run.__qualname__ = f"subscribe({topic!r}, {name})"
        self.consumer(topic, group=group or name, concurrency=concurrency)(start_run)

    def dead_letters(self, group: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Messages whose retries were spent, oldest first: of `group`, or of every group.
        Raises ConfigurationError for a group this store does not know."""
        return self._messaging.dead_letters(group, limit)

    def redrive_dead_letters(self, group: str, ids: Sequence[str] | None = None) -> int:
        """Hand dead letters of `group` (all, or those with these message ids) to it again,
        with fresh attempts; return how many moved."""
        return self._messaging.redrive(group, None if ids is None else list(ids))
