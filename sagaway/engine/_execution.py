"""Executing one claimed run: replay forward, unwind with compensations, record the end.

A run executes in one worker thread from claim to its next rest: the end, a durable wait,
or the loss of its lease. The pieces, each in its own module: `_replay` (the journal walked
position by position), `_attempts` (a step's tries), `_parking` (guards that refuse),
`_compensation` (the unwinding), `_checkpoint` (every write, fenced and lazy) and `_lease`.
This module ties them together and answers the saga function's calls: steps, `ctx.wait`,
`ctx.sleep` and `ctx.now` (fan-outs are `_fanout`'s and `_children`'s).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sagaway import _clock
from sagaway.engine import _serde as serde
from sagaway.engine._attempts import Attempts
from sagaway.engine._checkpoint import RunWriter
from sagaway.engine._children import ChildUnwinding, child_ended
from sagaway.engine._compensation import Unwinding
from sagaway.engine._completions import Completion
from sagaway.engine._control import Abandon, CancelRequested, Suspend, is_interrupt
from sagaway.engine._lease import Lease
from sagaway.engine._parking import INLINE_WAIT, Parking
from sagaway.engine._replay import JournalCursor
from sagaway.engine._runtime import Runtime
from sagaway.engine.context import EXECUTION, SagaContext
from sagaway.errors import ConfigurationError, NonDeterminismError, UnknownSaga, WaitTimeout
from sagaway.messaging._outbox import new_message
from sagaway.store.base import (
    FORWARD,
    Claim,
    EntryStatus,
    ErrorRecord,
    JournalEntry,
    RunStatus,
    RunUpdate,
    Wait,
)

if TYPE_CHECKING:
    from sagaway.engine.definitions import StepDefinition

__all__ = ["RunExecution"]

log = logging.getLogger("sagaway")


def _patch_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(
            f"ctx.patched({name!r}): name the change with a non-empty string, e.g. "
            "'new-tax-rule', and keep the name while runs that may reach it are in flight"
        )
    return name


class RunExecution:
    """The state of one run while a worker executes it."""

    def __init__(
        self, runtime: Runtime, claim: Claim, lease: float, stopping: threading.Event
    ) -> None:
        self.runtime = runtime
        self.run = run = claim.run
        self.stopping = stopping
        metrics = runtime.metrics
        self.journal = JournalCursor(run.id, run.saga, claim.journal)
        self._clock = runtime.store.now  # the store's clock (`store.clock`)
        granted = Lease(run.due_at or 0.0, lease, self._clock())
        self.writer = RunWriter(runtime.store, run, granted, metrics)
        self.parking = Parking(run, self.writer, metrics, self._pause)
        self.trace = runtime.tracing.run(run)  # current in this thread until execute() ends
        self.attempts = Attempts(
            run, self.writer, self.parking, runtime.invoker, metrics, self._pause, self.trace
        )
        self.unwinding = Unwinding(
            self.journal, self.writer, self.attempts, runtime.steps, metrics, stopping,
            ChildUnwinding(self),
        )  # fmt: skip
        self.pivot_passed = run.pivot_passed
        # What was recorded for each step failure raised into the saga, by id of the error.
        self._failures: dict[int, ErrorRecord] = {}
        self._last_failed: tuple[int | None, str | None] = (None, None)

    # --- entry point -----------------------------------------------------------------------
    def execute(self, completion: Completion) -> None:
        """Run until the run ends, rests or is lost to this worker; then set `completion`."""
        rest = "suspended"
        try:
            if self.run.status == RunStatus.COMPENSATING:
                self.unwinding.resume(self.run.error, self.writer.cancel_requested)
            elif self.writer.cancel_requested and not self.pivot_passed:
                self.unwinding.start(None, cancelled=True)
            else:
                self._forward()
        except Abandon as stop:
            rest = "released"
            if stop.why:
                level = logging.DEBUG if stop.quiet else logging.WARNING
                log.log(level, "run %s: stopped executing it: %s", self.run.id, stop.why)
            if stop.release:
                self.writer.release(stop.retry_in)
        except KeyboardInterrupt:
            rest = "released"
            self.writer.release()  # Ctrl-C in the caller's thread: hand the run back, stop
            raise
        finally:
            if self.run.flow is not None:
                self.runtime.wake()  # a slot it gave back may have made a queued run due
            outcome = self.writer.outcome
            if outcome is None:
                self.trace.end(rest)
            else:
                self.trace.end(outcome[0], outcome[2])  # the status, the error recorded
            self.runtime.completions.executed(completion, self.writer.outcome)
            if self.writer.outcome is not None and self.run.parent_id is not None:
                child_ended(self.runtime, self.run.parent_id)

    # --- forward -----------------------------------------------------------------------------
    def _forward(self) -> None:
        saga = self.runtime.sagas.get(self.run.saga)
        if saga is None:
            error = UnknownSaga(
                f"run {self.run.id} names saga {self.run.saga!r}, which this app does not "
                f"define (it defines: {', '.join(sorted(self.runtime.sagas)) or 'none'}): "
                "deploy the code that defines it, then `redrive` the run"
            )
            self.writer.escalate(None, reason="unknown saga")
            record = serde.error_record(error, phase="forward")
            self.writer.finish(RunStatus.FAILED, error=record.to_json())
            return
        arguments = serde.loads(self.run.input)
        token = EXECUTION.set(self)
        ending: BaseException | None
        try:
            value = saga.fn(SagaContext(self), *arguments["args"], **arguments["kwargs"])
            if self.journal.divergence is not None:
                raise self.journal.divergence
            self.journal.check_complete()
            result = serde.dumps(value, f"the return value of saga {saga.name!r}")
        except (Suspend, CancelRequested) as stop:
            ending = stop
        except Abandon:
            raise
        except BaseException as exc:  # sys.exit() in saga code fails the saga, too
            if is_interrupt(exc):
                raise
            ending = self.journal.divergence or exc
        else:
            ending = None
        finally:
            EXECUTION.reset(token)
        if ending is None:
            self.writer.finish(RunStatus.SUCCEEDED, result=result)
        elif isinstance(ending, Suspend):
            self.writer.suspend(ending)
        elif isinstance(ending, CancelRequested):
            self.unwinding.start(None, cancelled=True)
        else:
            self._failed(ending)

    def _failed(self, exc: BaseException) -> None:
        record = self._failures.get(id(exc))
        if record is None:  # not a step's failure as recorded: describe it now
            position, step = self._last_failed
            record = serde.error_record(exc, phase="forward", position=position, step=step)
        self.trace.failed(exc)
        if isinstance(exc, NonDeterminismError) or self.pivot_passed:
            reason = "non-determinism" if isinstance(exc, NonDeterminismError) else "after pivot"
            self.writer.escalate(record.step, reason=reason)
            self.writer.finish(RunStatus.FAILED, error=record.to_json())
        else:
            self.unwinding.start(record, cancelled=self.writer.cancel_requested)

    def call_step(self, step: StepDefinition, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run (or replay) one step call made by the saga function."""
        position, entry = self.journal.next("step", step.name)
        digest = serde.arguments_digest(args, kwargs)
        if entry is not None:
            self.journal.check_arguments(entry, digest)
            if entry.status == EntryStatus.OK:
                if step.pivot:
                    self.pivot_passed = True
                return serde.loads(entry.result or "null")
            raise serde.rebuild_error(entry.error) or RuntimeError(entry.error)
        self._before_effect()
        args_text = None
        if step.undo is not None:
            args_text = serde.dumps(
                {"args": list(args), "kwargs": kwargs}, f"the arguments of step {step.name!r}"
            )
        started = self._clock()
        outcome = self.attempts.call(step.name, position, step.body, args, kwargs, guards=step)
        if not outcome.ok:
            assert outcome.error is not None
            record = serde.error_record(
                outcome.error, phase="forward", position=position, step=step.name
            )
            self._record(
                JournalEntry.step(
                    position,
                    step.name,
                    args=args_text,
                    error=record.to_json(),
                    attempts=outcome.tries,
                    started_at=started,
                    finished_at=self._clock(),
                    digest=digest,
                )
            )
            # The saga sees the error as a replay will: rebuilt from what was recorded.
            error = serde.rebuild_error(record) or outcome.error
            self._failures[id(error)] = record
            raise error from outcome.error
        self.writer.publish(outcome.published)
        self._record(
            JournalEntry.step(
                position,
                step.name,
                args=args_text,
                result=outcome.text,
                attempts=outcome.tries,
                started_at=started,
                finished_at=self._clock(),
                digest=digest,
            )
        )
        if step.pivot:
            self.pivot_passed = True
            self.writer.pivot_reached()
        return outcome.value

    def wait(self, signal: str, timeout: float | None) -> Any:
        """ctx.wait: the payload of the next `signal`, durably."""
        position, entry = self.journal.next("wait", signal)
        if entry is not None:
            if entry.status == EntryStatus.OK:
                return serde.loads(entry.result or "null")
            raise WaitTimeout(signal, timeout)
        if self.writer.cancel_requested and not self.pivot_passed:
            raise CancelRequested()
        try:
            found = self.runtime.store.pending_signal(
                self.run.id, signal, self.writer.consumed_ids()
            )
        except Exception as exc:
            raise self.writer.store_failed(exc) from exc
        now = self._clock()
        if found is not None:
            self.writer.consume(found.id, position)
            self._mark(position, "wait", signal, EntryStatus.OK, found.payload)
            since = self._reached(position)
            self.trace.waited("wait", signal, position, since, "signalled", found.trace_context)
            return serde.loads(found.payload)
        run = self.run
        if run.wait_position == position and run.wait_name == signal:
            deadline = run.wait_deadline
        else:
            deadline = None if timeout is None else now + timeout
        if deadline is not None and now >= deadline:
            self._mark(position, "wait", signal, EntryStatus.TIMEOUT)
            self.trace.waited("wait", signal, position, self._reached(position), "timeout")
            raise WaitTimeout(signal, timeout)
        raise Suspend(deadline, Wait(signal, position, deadline))

    def publish(
        self,
        topic: str,
        payload: Any,
        key: str | None,
        delay: float | None,
        dedup_id: str | None,
    ) -> str:
        """ctx.publish: a message committed with the run's next write, once."""
        position, entry = self.journal.next("publish", topic)
        if entry is not None:
            return str(serde.loads(entry.result or "null"))
        message = new_message(
            topic,
            payload,
            key=key,
            delay=delay,
            dedup_id=dedup_id,
            origin=f"{self.run.id}/{position}/publish",
            now=self._clock(),
        )
        self._mark(position, "publish", topic, EntryStatus.OK, serde.dumps(message.id, "id"))
        self.writer.publish(self.trace.stamp([message]))
        return message.id

    def patched(self, name: str, deprecated: bool = False) -> bool:
        """ctx.patched / ctx.deprecate_patch: which side of a code change this run is on."""
        found, position = self.journal.patch(_patch_name(name), deprecated)
        if position is not None:
            self._mark(position, "patch", name, EntryStatus.OK)
        return found

    def sleep(self, seconds: float) -> None:
        """ctx.sleep: a durable timer."""
        position, entry = self.journal.next("sleep", "sleep")
        if entry is not None:
            wake_at, since = float(serde.loads(entry.result or "0")), entry.finished_at
        else:
            since = self._clock()
            wake_at = since + max(0.0, float(seconds))
            self._mark(position, "sleep", "sleep", EntryStatus.OK, repr(wake_at))
        remaining = wake_at - self._clock()
        if remaining <= 0:
            # Only when the run rested on this timer, not when replaying one long over.
            if self.run.wait_name is None and self.journal.resumes_at(position):
                self.trace.waited("sleep", "sleep", position, since, "elapsed")
            return
        if remaining <= INLINE_WAIT:
            self._pause(remaining)
            self.trace.waited("sleep", "sleep", position, since, "elapsed")
            return
        raise Suspend(wake_at, None)

    def now(self) -> datetime:
        """ctx.now: the time, recorded once."""
        position, entry = self.journal.next("now", "now")
        if entry is not None:
            value = float(serde.loads(entry.result or "0"))
        else:
            value = self._clock()
            self._mark(position, "now", "now", EntryStatus.OK, repr(value))
        return datetime.fromtimestamp(value, UTC)

    # --- helpers -------------------------------------------------------------------------------
    def _reached(self, position: int) -> float:
        """When the saga reached the action at `position`: as the action before it was
        recorded (code between actions takes no time to speak of), or the run's creation."""
        before = self.journal.forward.get(position - 1)
        return before.finished_at if before is not None and position > 0 else self.run.created_at

    def _record(self, entry: JournalEntry) -> None:
        self.journal.add(entry)
        if entry.phase == FORWARD and entry.status != EntryStatus.OK:
            self._last_failed = (entry.position, entry.name)  # redrive reruns it
        self.writer.record(entry)

    def _mark(
        self, position: int, kind: str, name: str, status: EntryStatus, result: str | None = None
    ) -> None:
        """Record an instantaneous forward entry (a wait's outcome, a timer, a clock reading)."""
        self._record(JournalEntry.instant(position, kind, name, status, result, self._clock()))

    def _before_effect(self) -> None:
        """Make everything recorded so far durable before an effect may happen; honour a
        cancel request that arrived meanwhile."""
        if self.stopping.is_set():
            raise Abandon(True)
        self.writer.before_effect()
        if self.writer.cancel_requested:
            if not self.pivot_passed:
                raise CancelRequested()
            self.writer.event("cancel_ignored", reason="run passed its pivot")
            self.writer.cancel_requested = False
            self.writer.flush(RunUpdate(clear_cancel=True))

    def _pause(self, seconds: float) -> None:
        if _clock.pause(self.stopping, seconds):
            raise Abandon(True)
