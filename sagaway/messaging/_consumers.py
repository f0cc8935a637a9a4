"""Consumer groups at work: a `GroupWorker` claims its group's due messages with a lease,
hands each to the handler on one of `concurrency` threads, renews the leases of the
messages in hand, and settles each try — handled (the inbox: never again), back to `ready`
after a backoff, or dead once the retry policy gives up. A breaker, rate limit or bulkhead
that refuses parks the message (no try spent) until the refusal's `retry_after`."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sagaway.engine import _serde as serde
from sagaway.engine._invoke import StepInvoker
from sagaway.engine._tracing import NO_TRACING, Tracing
from sagaway.engine.metrics import EngineMetrics
from sagaway.errors import RateLimited, Rejected, SerializationError, StoreUnavailable
from sagaway.messaging._message import Message
from sagaway.resilience.breaker import CircuitBreaker
from sagaway.resilience.bulkhead import Bulkhead
from sagaway.resilience.ratelimit import RateLimiter
from sagaway.resilience.retry import Retry
from sagaway.resilience.timeout import Timeout
from sagaway.store.base import Store
from sagaway.store.messages import Claimed, DeliveryStatus

__all__ = ["Consumer", "GroupWorker"]

log = logging.getLogger("sagaway")

# When refused without a `retry_after`, look again after this long.
_PARK_DEFAULT = 0.5


@dataclass(frozen=True)
class Consumer:
    """What `@app.consumer` declares: the handler of `group`'s messages of `topic`."""

    topic: str
    group: str
    fn: Callable[..., Any]
    is_async: bool
    concurrency: int
    retry: Retry
    ordered: bool
    timeout: Timeout | None = None
    breaker: CircuitBreaker | None = None
    rate_limit: RateLimiter | None = None
    bulkhead: Bulkhead | None = None


class GroupWorker:
    """Runs one consumer: a scheduler thread claiming, `concurrency` handler threads, and a
    heartbeat renewing the leases of messages in hand."""

    def __init__(
        self,
        consumer: Consumer,
        store: Store,
        invoker: StepInvoker,
        metrics: EngineMetrics,
        owner: str,
        lease: float,
        poll_interval: float,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.consumer, self.store, self.invoker, self.metrics = consumer, store, invoker, metrics
        self.owner, self.lease, self.poll_interval = owner, lease, poll_interval
        self.tracing = tracing
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._active = 0
        self._inflight: set[str] = set()
        self._queue: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.handled = 0

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the threads."""
        name = f"sagaway-{self.consumer.group}"
        for i in range(self.consumer.concurrency):
            self._spawn(self._handle_loop, f"{name}-{i}")
        self._spawn(self._schedule_loop, f"{name}-claims")
        self._spawn(self._heartbeat_loop, f"{name}-leases")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wake(self) -> None:
        """Look for due messages now."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; let handlers finish the messages in hand, and hand back at once
        those claimed but not yet started (no try counted)."""
        self.stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        self._threads[-2].join(max(0.0, deadline - time.monotonic()))  # the scheduler
        while True:
            try:
                claimed = self._queue.get_nowait()
            except queue.Empty:
                break
            if claimed is not None:
                try:
                    self._settle(
                        claimed, DeliveryStatus.READY, self.store.now(), count_attempt=False
                    )
                except Exception:  # its lease expires instead
                    log.warning(
                        "sagaway consumer %s: could not hand back %s",
                        claimed.group,
                        claimed.message.id,
                        exc_info=True,
                    )
        for _ in range(self.consumer.concurrency):
            self._queue.put(None)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- threads ---------------------------------------------------------------------------
    def _schedule_loop(self) -> None:
        c = self.consumer
        while not self.stopping.is_set():
            self._wake.clear()
            try:
                with self._lock:
                    free = c.concurrency - self._active
                claims: list[Claimed] = []
                if free > 0:
                    now = self.store.now()
                    claims = self.store.claim_messages(
                        c.group, self.owner, free, now, now + self.lease, c.ordered
                    )
                with self._lock:
                    self._active += len(claims)
                    self._inflight.update(claimed.message.id for claimed in claims)
                for claimed in claims:
                    self._queue.put(claimed)
                if claims and len(claims) == free:
                    self._wake.wait(0.005)  # all slots busy: look again when one frees
                    continue
                if claims:
                    continue  # there may be more due
            except Exception as exc:
                # The store says once that it is unavailable: no trace per try.
                level = logging.DEBUG if isinstance(exc, StoreUnavailable) else logging.ERROR
                log.log(
                    level,
                    "sagaway consumer %s: claiming messages failed; retrying",
                    c.group,
                    exc_info=True,
                )
                self._wake.wait(1.0)
                continue
            self._wake.wait(self.poll_interval)

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.lease / 3):
            with self._lock:
                held = list(self._inflight)
            try:
                self.store.renew_messages(
                    self.consumer.group, self.owner, held, self.store.now() + self.lease
                )
            except Exception as exc:
                level = logging.DEBUG if isinstance(exc, StoreUnavailable) else logging.ERROR
                log.log(
                    level,
                    "sagaway consumer %s: renewing leases failed",
                    self.consumer.group,
                    exc_info=True,
                )

    def _handle_loop(self) -> None:
        while True:
            claimed = self._queue.get()
            if claimed is None:
                return
            try:
                self._handle(claimed)
            except StoreUnavailable:  # said once by the store; the lease expires, it comes back
                log.debug(
                    "sagaway consumer %s: settling failed", self.consumer.group, exc_info=True
                )
            except BaseException:  # nothing may end a handler thread
                log.exception(
                    "sagaway consumer %s: message %s: unexpected error",
                    self.consumer.group,
                    claimed.message.id,
                )
            finally:
                with self._lock:
                    self._active -= 1
                    self._inflight.discard(claimed.message.id)
                self._wake.set()

    # --- one try -------------------------------------------------------------------------
    def _handle(self, claimed: Claimed) -> None:
        c = self.consumer
        message = Message.from_record(claimed.message, c.group, claimed.attempt)
        permit = None
        slot = False
        try:
            if c.breaker is not None:
                permit = c.breaker.acquire()
            if c.bulkhead is not None:
                c.bulkhead.acquire(timeout=0.0)
                slot = True
            if c.rate_limit is not None:
                wait = c.rate_limit.try_acquire()
                if wait > 0:
                    raise RateLimited(
                        name=c.rate_limit.name, tokens=1, retry_after=wait, max_wait=0.0
                    )
        except Rejected as refusal:
            if permit is not None:
                permit.release()
            if slot and c.bulkhead is not None:
                c.bulkhead.release()
            self._park(claimed, refusal)
            return
        started = time.monotonic()
        try:
            with self.tracing.handling(claimed):  # the handler's span is current in it
                self.invoker.call(c.fn, c.is_async, c.timeout, (message,), {})
        except BaseException as exc:
            seconds = time.monotonic() - started
            if permit is not None:
                permit.record_failure(exc, seconds)
            self.metrics.message_handled(c.group, seconds, False)
            if isinstance(exc, Rejected) and exc.retry_after:
                self._park(claimed, exc)  # a breaker the handler uses itself refused
                return
            self._failed(claimed, exc)
            return
        finally:
            if slot and c.bulkhead is not None:
                c.bulkhead.release()
        seconds = time.monotonic() - started
        if permit is not None:
            permit.record_success(seconds)
        c.retry.record_success()
        self.metrics.message_handled(c.group, seconds, True)
        self._settle(claimed, DeliveryStatus.HANDLED)
        self.handled += 1

    def _failed(self, claimed: Claimed, exc: BaseException) -> None:
        c = self.consumer
        error = serde.error_record(exc).to_json()
        if not isinstance(exc, SerializationError) and c.retry.allows(exc, claimed.attempt):
            delay = c.retry.delay(claimed.attempt, None)
            self.metrics.message_retried(c.group)
            self._settle(claimed, DeliveryStatus.READY, self.store.now() + delay, error)
            return
        self.metrics.message_dead(c.group)
        log.warning(
            "message %s of topic %r went to the dead letters of group %r after %d attempt(s): "
            "%s: %s (see `sagaway messages dlq --group %s`)",
            claimed.message.id,
            c.topic,
            c.group,
            claimed.attempt,
            type(exc).__name__,
            exc,
            c.group,
        )
        self._settle(claimed, DeliveryStatus.DEAD, None, error)

    def _park(self, claimed: Claimed, refusal: Rejected) -> None:
        wait = refusal.retry_after if refusal.retry_after is not None else _PARK_DEFAULT
        self._settle(claimed, DeliveryStatus.READY, self.store.now() + wait, count_attempt=False)

    def _settle(
        self,
        claimed: Claimed,
        status: DeliveryStatus,
        due_at: float | None = None,
        error: str | None = None,
        count_attempt: bool = True,
    ) -> None:
        settled = self.store.settle_message(
            claimed.group,
            claimed.message.id,
            claimed.epoch,
            self.store.now(),
            status,
            due_at,
            error,
            count_attempt,
        )
        if not settled:
            log.warning(
                "sagaway consumer %s: message %s was taken over by another consumer while "
                "being handled (lease lost): its outcome here is not recorded",
                claimed.group,
                claimed.message.id,
            )
