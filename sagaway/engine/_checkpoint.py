"""Checkpoints: everything one execution records reaches the store through one fenced write.

Writes are lazy but never late: a completed step's entry (and the signals consumed, the
events noted) is held in memory until just before the next effect — the next step's body, a
wait, the end — and that effect only starts once the write is durable. So a step's
completion costs one write, and the last step shares its write with the run's end. Each
write carries the run's epoch: once another worker has claimed the run, it is refused
(`LeaseLost`) and this execution stops without having done anything more.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from sagaway.engine import _crashpoints as crashpoints
from sagaway.engine._control import Abandon, Suspend
from sagaway.engine._lease import Lease
from sagaway.engine.metrics import EngineMetrics
from sagaway.errors import LeaseLost, StoreUnavailable
from sagaway.store.base import (
    KEEP,
    Checkpoint,
    EventRecord,
    JournalEntry,
    RunRecord,
    RunStatus,
    RunUpdate,
    Store,
)
from sagaway.store.messages import NewMessage

__all__ = ["RunWriter"]

log = logging.getLogger("sagaway")


class RunWriter:
    """The writes of one execution of `run`, under the lease epoch it was claimed with, and
    how the run's end or rest is recorded (`finish`, `suspend`, `release`, `escalate`)."""

    def __init__(self, store: Store, run: RunRecord, lease: Lease, metrics: EngineMetrics) -> None:
        self.store, self.run, self.lease, self.metrics = store, run, lease, metrics
        self.run_id, self.epoch = run.id, run.epoch
        self.cancel_requested = run.cancel_requested  # as of the last write
        # (status, result, error) once the run ended in this execution.
        self.outcome: tuple[RunStatus, str | None, str | None] | None = None
        self._entries: list[JournalEntry] = []
        self._consumed: list[tuple[int, int]] = []  # (signal id, position)
        self._events: list[EventRecord] = []
        self._messages: list[NewMessage] = []
        self._pivot_reached = False

    def record(self, entry: JournalEntry) -> None:
        """Hold a journal entry for the next write."""
        self._entries.append(entry)

    def publish(self, messages: Sequence[NewMessage]) -> None:
        """Hold messages for the next write: the one that records their step's completion.
        A step body stamped them with its host's clock; consumers compare the store's."""
        now = self.store.now()
        self._messages.extend(
            dataclasses.replace(
                # The delay in brackets: (now + available) - published is off by a rounding
                # error, and would turn a message without a delay into one delayed.
                m,
                published_at=now,
                available_at=now + (m.available_at - m.published_at),
            )
            for m in messages
        )

    def consume(self, signal_id: int, position: int) -> None:
        """Mark a signal taken by the wait at `position`, with the next write."""
        self._consumed.append((signal_id, position))

    def consumed_ids(self) -> list[int]:
        """Signals taken by this execution and not yet written."""
        return [signal_id for signal_id, _ in self._consumed]

    def event(self, kind: str, **data: Any) -> None:
        """Note an event for a person (a retry, a park, an escalation), with the next write."""
        self._events.append(EventRecord(self.run_id, self.store.now(), kind, json.dumps(data)))

    def pivot_reached(self) -> None:
        """The pivot step completed: the next write marks the run past its pivot."""
        self._pivot_reached = True

    def before_effect(self) -> None:
        """Make everything held durable, and renew the lease if it may be ending, before an
        effect may happen."""
        renew = self.lease.ending()
        if self._entries or self._consumed or self._events or self._pivot_reached or renew:
            self.flush(RunUpdate() if renew else None)

    def hold_lease(self) -> None:
        """Just before a step body: a pause (a backoff, a flush, a stopped process) may have
        outlived the lease, and another worker may have done this step meanwhile. Renew it
        (fenced) if it may be ending: a worker paused past its lease learns here that it
        lost the run, before doing anything."""
        if self.lease.ending():
            self.flush(RunUpdate())

    def flush(self, update: RunUpdate | None = None, release_slot: bool = False) -> None:
        """Write what is held, and `update` of the run row, in one fenced transaction (with
        `release_slot`, the run gives its flow-control slot back). Raises Abandon when the
        lease was lost or the store failed."""
        now, sent = self.store.now(), time.monotonic()
        if self._pivot_reached:
            update = update or RunUpdate()
            update.pivot_passed = True
        checkpoint = Checkpoint(
            run_id=self.run_id,
            epoch=self.epoch,
            now=now,
            lease_until=self.lease.renewal(now),
            entries=self._entries,
            consumed=self._consumed,
            events=self._events,
            update=update,
            messages=self._messages,
            release_slot=release_slot,
        )
        try:
            self.cancel_requested = self.store.checkpoint(checkpoint)
        except LeaseLost:
            raise Abandon(False, why="another worker took it over (lease lost)") from None
        except Exception as exc:
            raise self.store_failed(exc) from exc
        if crashpoints.probe is not None:
            crashpoints.probe.after_write(self.run.saga, checkpoint)
        self._entries, self._consumed, self._events, self._messages = [], [], [], []
        self._pivot_reached = False
        if update is not None and update.due_at is KEEP and checkpoint.lease_until is not None:
            self.lease.renewed(sent)

    # --- a run's end or rest -------------------------------------------------------------
    def finish(
        self, status: RunStatus, result: str | None = None, error: str | None = None
    ) -> None:
        """The run ended: write its status, result or error, and count it."""
        update = RunUpdate(
            status=status, due_at=None, owner=None, result=result, error=error, wait=None
        )
        self.flush(update, release_slot=self.run.flow is not None)
        self.outcome = (status, result, error)
        self.metrics.finished(self.run.saga, status, self.store.now() - self.run.created_at)

    def suspend(self, rest: Suspend) -> None:
        """The run rests (a wait, a timer, a park): no owner, due at its wake time."""
        update = RunUpdate(
            status=RunStatus.WAITING, due_at=rest.wake_at, owner=None, wait=rest.wait, rest=True
        )
        # Resting, it gives its slot back (a checkout waiting hours for a customer holds
        # none); it takes one again when it resumes.
        self.flush(update, release_slot=self.run.flow is not None)
        self.metrics.suspended(self.run.saga)

    def release(self, delay: float = 0.0) -> None:
        """Hand the run back (with what it completed), due after `delay`; if even that
        fails, the lease expires and another worker recovers the run."""
        try:
            self.flush(RunUpdate(owner=None, due_at=self.store.now() + delay))
        except Abandon:
            pass

    def escalate(self, step: str | None, **details: Any) -> None:
        """The run ends `failed` and needs a person: note the event, count it, log it."""
        fields = {"step": step, **details} if step is not None else details
        self.event("escalation", **fields)
        self.metrics.escalated(self.run.saga, step)
        log.warning(
            "run %s of saga %r failed and needs attention (%s): see `sagaway runs show %s`",
            self.run_id,
            self.run.saga,
            ", ".join(f"{key}={value}" for key, value in fields.items()),
            self.run_id,
        )

    @staticmethod
    def store_failed(error: Exception) -> Abandon:
        """The database failed: stop here without the saga seeing the error (it is not the
        saga's failure) and hand the run back, due a second later; if even that fails, the
        lease (which only executing runs' heartbeats renew) expires and the run is
        recovered."""
        quiet = isinstance(error, StoreUnavailable)
        return Abandon(True, retry_in=1.0, why=f"the store failed: {error!r}", quiet=quiet)
