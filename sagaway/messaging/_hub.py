"""An App's messaging: its consumers, their group workers while the App runs, and the
calls behind `app.publish`, `app.dead_letters` and `app.redrive_dead_letters`."""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from typing import Any

from sagaway.engine._invoke import StepInvoker
from sagaway.engine._recovery import new_owner
from sagaway.engine._tracing import NO_TRACING, Tracing
from sagaway.engine.metrics import EngineMetrics, labels
from sagaway.errors import ConfigurationError, StepTimeout
from sagaway.messaging._consumers import Consumer, GroupWorker
from sagaway.messaging._message import DeadLetter, Message
from sagaway.messaging._outbox import new_message
from sagaway.resilience.breaker import CircuitBreaker
from sagaway.resilience.bulkhead import Bulkhead
from sagaway.resilience.ratelimit import RateLimiter
from sagaway.resilience.retry import Retry
from sagaway.resilience.timeout import Timeout
from sagaway.store.base import ErrorRecord, Store

__all__ = ["Messaging"]

_MAX_CONCURRENCY = 1024


class Messaging:
    """The messaging side of one App."""

    def __init__(
        self,
        store: Callable[[], Store],
        invoker: StepInvoker,
        metrics: EngineMetrics,
        lease: float,
        poll_interval: float,
    ) -> None:
        self._store, self.invoker, self.metrics = store, invoker, metrics
        self.lease, self.poll_interval = lease, poll_interval
        self.consumers: dict[tuple[str, str], Consumer] = {}
        self._workers: dict[tuple[str, str], GroupWorker] = {}
        self._owner: str | None = None
        self._unwatch: Callable[[], None] | None = None
        self.tracing: Tracing = NO_TRACING

    # --- declarations ------------------------------------------------------------------
    def declare(
        self,
        topic: str,
        fn: Callable[..., Any],
        *,
        group: str,
        concurrency: int,
        retry: Retry,
        ordered: bool,
        timeout: float | None,
        breaker: CircuitBreaker | None,
        rate_limit: RateLimiter | None,
        bulkhead: Bulkhead | None,
    ) -> Consumer:
        """Declare a consumer; it starts with the App's worker (at once if running)."""
        new_message(topic, None)  # the same checks of the topic as publishing makes
        if not isinstance(group, str) or not group.strip():
            raise ConfigurationError(
                f"consumer of {topic!r}: group= names the consumer group, a non-empty string"
            )
        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not 1 <= concurrency <= _MAX_CONCURRENCY
        ):
            raise ConfigurationError(
                f"consumer {group!r} of {topic!r}: concurrency must be a whole number from 1 "
                f"to {_MAX_CONCURRENCY}, got {concurrency!r}"
            )
        if (group, topic) in self.consumers:
            existing = self.consumers[(group, topic)].fn
            raise ConfigurationError(
                f"group {group!r} already has a consumer of {topic!r} "
                f"({existing.__module__}.{existing.__qualname__}): a group handles a topic "
                "once; give the other consumer another group"
            )
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(
                f"consumer {group!r} of {topic!r}: timeout must be positive seconds, "
                f"got {timeout!r}"
            )
        consumer = Consumer(
            topic=topic,
            group=group,
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            concurrency=concurrency,
            retry=retry,
            ordered=ordered,
            timeout=None
            if timeout is None
            else Timeout(timeout, name=f"consumer {group!r}", error=StepTimeout),
            breaker=breaker,
            rate_limit=rate_limit,
            bulkhead=bulkhead,
        )
        self.consumers[(group, topic)] = consumer
        if self._owner is not None:
            self._start_one(consumer)
        return consumer

    # --- running -----------------------------------------------------------------------
    def start(self) -> None:
        """Register every group and start its worker (called by `App.launch`)."""
        if self._owner is not None:
            return
        self._owner = new_owner()
        self._unwatch = self._store().on_wake(self._wake_all)
        for consumer in list(self.consumers.values()):
            self._start_one(consumer)

    def _start_one(self, consumer: Consumer) -> None:
        store = self._store()
        store.register_group(consumer.group, consumer.topic, store.now())
        assert self._owner is not None
        worker = GroupWorker(
            consumer,
            store,
            self.invoker,
            self.metrics,
            self._owner,
            self.lease,
            self.poll_interval if self._unwatch is None else 1.0,
            self.tracing,
        )
        worker.start()
        self._workers[(consumer.group, consumer.topic)] = worker

    def _wake_all(self) -> None:
        for worker in list(self._workers.values()):
            worker.wake()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every group worker (called by `App.shutdown`)."""
        workers, self._workers = list(self._workers.values()), {}
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.stopping.set()
        for worker in workers:
            worker.stop(max(0.0, deadline - time.monotonic()))
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._owner = None

    @property
    def running(self) -> bool:
        """Whether group workers run in this process."""
        return bool(self._workers)

    # --- calls ---------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: Any,
        key: str | None,
        delay: float | None,
        dedup_id: str | None,
        conn: Any,
        trace_context: str | None = None,
    ) -> str:
        """Publish one message, in its own transaction or in the caller's (`conn`); it
        continues `trace_context` if given, else the caller's current trace (if traced)."""
        store = self._store()
        message = new_message(
            topic, payload, key=key, delay=delay, dedup_id=dedup_id, now=store.now()
        )
        if trace_context is not None:
            message = dataclasses.replace(message, trace_context=trace_context)
        messages = self.tracing.publish([message])
        if conn is None:
            store.publish(messages)
        else:
            store.publish_in(conn, messages)
        return message.id

    def dead_letters(self, group: str | None, limit: int) -> list[DeadLetter]:
        """The dead letters of `group` (or of every group), oldest first."""
        if group is not None:
            self._known_group(group)
        return [
            DeadLetter(
                id=record.id,
                group=grp,
                message=Message.from_record(record, grp, attempts),
                error=ErrorRecord.from_json(error),
                attempts=attempts,
                failed_at=failed_at,
            )
            for grp, record, error, attempts, failed_at in self._store().dead_letters(group, limit)
        ]

    def redrive(self, group: str, ids: list[str] | None) -> int:
        """Move dead letters of `group` back to it; return how many moved."""
        self._known_group(group)
        store = self._store()
        moved = store.redrive_dead_letters(group, ids, store.now())
        self._wake_all()
        return moved

    def _known_group(self, group: str) -> None:
        known = sorted({g.group for g in self._store().groups()} | {g for g, _ in self.consumers})
        if group not in known:
            raise ConfigurationError(
                f"no consumer group {group!r} in this store (known: {', '.join(known) or 'none'})"
            )

    def gauges(self, now: float) -> list[tuple[str, str, float]]:
        """Depth and lag per group of this process's consumers, for the metrics recorder."""
        if not self._workers:
            return []
        mine = {group for group, _ in self._workers}
        rows = []
        for stats in self._store().groups():
            if stats.group not in mine:
                continue
            label = labels(group=stats.group, topic=stats.topic)
            lag = 0.0 if stats.oldest_ready is None else max(0.0, now - stats.oldest_ready)
            rows.append(("group_depth", label, float(stats.ready)))
            rows.append(("group_lag_seconds", label, lag))
        return rows
