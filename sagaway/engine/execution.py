"""Executing one claimed run: replay forward, unwind with compensations, record the end.

A run executes in one worker thread from claim to its next rest: the end, a durable wait, or
the loss of its lease. Forward, the saga function is called again from the top; each step,
wait, sleep or clock reading takes the next journal position, and a position already in the
journal returns what it recorded instead of running again. Writes are lazy but never late:
a completed step's entry is held in memory until just before the next effect (the next
step's body, a wait, the end), and that effect only starts once the write is durable. So a
step's completion costs one write, and the last step shares its write with the run's end.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sagaway.engine import serde
from sagaway.engine.context import EXECUTION, SagaContext, StepInfo
from sagaway.errors import (
    LeaseLost,
    NonDeterminismError,
    SerializationError,
    UnknownSaga,
    WaitTimeout,
)
from sagaway.resilience.breaker import BreakerPermit
from sagaway.resilience.errors import RateLimited, Rejected
from sagaway.resilience.retry import Permanent
from sagaway.store.base import (
    COMPENSATION,
    FORWARD,
    KEEP,
    Checkpoint,
    Claim,
    EventRecord,
    JournalEntry,
    RunUpdate,
)

if TYPE_CHECKING:
    from sagaway.engine.app import Completion
    from sagaway.engine.definitions import Compensation, StepDefinition
    from sagaway.engine.worker import Worker

__all__ = ["RunExecution"]

log = logging.getLogger("sagaway")

# Sleeps and waits this short are taken in the worker thread instead of parking the run.
INLINE_SLEEP = 1.0
# A run parked by a step's breaker, rate limit or bulkhead rests on a wait of this name.
PARK_PREFIX = "park:"


def is_interrupt(error: BaseException) -> bool:
    """A Ctrl-C in the main thread (a caller executing its own run): it stops the program,
    it is not the saga's failure. Everywhere else a KeyboardInterrupt is user code's."""
    return (
        isinstance(error, KeyboardInterrupt)
        and threading.current_thread() is threading.main_thread()
    )


def unwrap_permanent(error: BaseException) -> BaseException:
    """The error a `Permanent` stands for: `Permanent(error)` or `raise Permanent() from
    error` records `error`; a bare `Permanent("reason")` records itself."""
    if isinstance(error, Permanent):
        if error.args and isinstance(error.args[0], BaseException):
            return error.args[0]
        if error.__cause__ is not None:
            return error.__cause__
    return error


class _Suspend(BaseException):
    """The run rests until `wake_at` (or, with `signal`, until the awaited signal):
    unwinds the saga function."""

    def __init__(
        self,
        wake_at: float | None,
        wait: tuple[str, int, float | None] | None,
        signal: bool = True,
    ) -> None:
        self.wake_at, self.wait, self.signal = wake_at, wait, signal


class _Refused(Exception):
    """A step stayed refused by its breaker, rate limit or bulkhead past its deadline."""

    def __init__(self, error: Rejected) -> None:
        super().__init__(str(error))
        self.error = error


class _Abandon(BaseException):
    """Stop executing this run now: the lease was lost (`release` False), the worker is
    stopping, or the store failed (`retry_in`: hand the run back due that much later).
    A BaseException, so that saga code catching Exception cannot swallow it."""

    def __init__(self, release: bool, retry_in: float = 0.0, why: str = "") -> None:
        self.release, self.retry_in, self.why = release, retry_in, why


class _CancelRequested(BaseException):
    """The run was asked to cancel: unwind."""


class RunExecution:
    """The state of one run while a worker executes it."""

    def __init__(self, worker: Worker, claim: Claim) -> None:
        self.worker = worker
        self.app = worker.app
        self.store = worker.app.store
        self.run = claim.run
        self.epoch = claim.run.epoch
        # The lease as this execution knows it was granted (claim, or a checkpoint that renewed
        # it). The heartbeat renews it too, but no effect starts on the heartbeat's word.
        self.lease_until = claim.run.due_at or 0.0
        self.forward: dict[int, JournalEntry] = {}
        self.undone: dict[int, JournalEntry] = {}
        for entry in claim.journal:
            (self.forward if entry.phase == FORWARD else self.undone)[entry.position] = entry
        self.position = 0
        self.cancel_requested = claim.run.cancel_requested
        self.pivot_passed = claim.run.pivot_passed
        self._pending: list[JournalEntry] = []
        self._consumed: list[tuple[int, int]] = []
        self._events: list[EventRecord] = []
        self._pivot_reached = False
        self._nondeterminism: NonDeterminismError | None = None
        # (position, step) of each step failure raised into the saga, by id of the exception
        # What was recorded for each step failure raised into the saga, by id of the error.
        self._failures: dict[int, dict[str, Any]] = {}
        self._outcome: tuple[str, str | None, str | None] | None = None
        self._last_failed: tuple[int | None, str | None] = (None, None)
        self._parked: tuple[int, float | None] | None = None  # (position, deadline)
        self._parked_inline = 0.0  # seconds this execution waited out refusals in-thread

    # --- entry point -----------------------------------------------------------------------
    def execute(self, completion: Completion) -> None:
        """Run until the run ends, rests or is lost to this worker; then set `completion`."""
        try:
            if self.run.status == "compensating":
                self._unwind(resume=True)
            elif self.cancel_requested and not self.pivot_passed:
                self._unwind(error=None, cancelled=True)
            else:
                self._forward()
        except _Abandon as stop:
            if stop.why:
                log.warning("run %s: stopped executing it: %s", self.run.id, stop.why)
            if stop.release:
                self._release(stop.retry_in)
        except KeyboardInterrupt:
            self._release()  # Ctrl-C in the caller's thread: hand the run back, then stop
            raise
        finally:
            self.app.executed(self.run.id, completion, self._outcome)

    # --- forward -----------------------------------------------------------------------------
    def _forward(self) -> None:
        saga = self.app.sagas.get(self.run.saga)
        if saga is None:
            error = UnknownSaga(
                f"run {self.run.id} names saga {self.run.saga!r}, which this app does not "
                f"define (it defines: {', '.join(sorted(self.app.sagas)) or 'none'}): deploy "
                "the code that defines it, then `redrive` the run"
            )
            self._escalate(None, reason="unknown saga")
            self._finish("failed", error=self._error_text(error, phase="forward"))
            return
        arguments = serde.loads(self.run.input)
        token = EXECUTION.set(self)
        try:
            try:
                value = saga.fn(SagaContext(self), *arguments["args"], **arguments["kwargs"])
                if self._nondeterminism is not None:
                    raise self._nondeterminism
                self._check_replay_complete()
                outcome: tuple[str, Any] = (
                    "succeeded",
                    serde.dumps(value, f"the return value of saga {saga.name!r}"),
                )
            except _Suspend as rest:
                outcome = ("suspend", rest)
            except _CancelRequested:
                outcome = ("cancel", None)
            except _Abandon:
                raise
            except BaseException as exc:  # sys.exit() in saga code fails the saga, too
                if is_interrupt(exc):
                    raise
                outcome = ("error", self._nondeterminism or exc)
        finally:
            EXECUTION.reset(token)
        kind, value = outcome
        if kind == "succeeded":
            self._finish("succeeded", result=value)
        elif kind == "suspend":
            self._suspend(value)
        elif kind == "cancel":
            self._unwind(error=None, cancelled=True)
        else:
            self._forward_failed(value)

    def _forward_failed(self, exc: BaseException) -> None:
        recorded = self._failures.get(id(exc))
        if recorded is not None:  # a step's failure, unchanged: its recorded description
            doc, (position, step) = json.dumps(recorded), (recorded["position"], recorded["step"])
        else:
            position, step = self._last_failed
            doc = self._error_text(exc, phase="forward", position=position, step=step)
        if isinstance(exc, NonDeterminismError) or self.pivot_passed:
            reason = "non-determinism" if isinstance(exc, NonDeterminismError) else "after pivot"
            self._escalate(step, reason=reason)
            self._finish("failed", error=doc)
        else:
            self._unwind(error=doc)

    def _check_replay_complete(self) -> None:
        later = sorted(p for p in self.forward if p >= self.position)
        if later:
            entry = self.forward[later[0]]
            self._diverged(
                entry.position,
                f"the saga returned after {self.position} journal positions, but the journal "
                f"records {entry.kind} {entry.name!r} at position {entry.position}",
            )

    def _next(self, kind: str, name: str) -> tuple[int, JournalEntry | None]:
        if self._nondeterminism is not None:
            raise self._nondeterminism  # the first divergence is the one to report
        position = self.position
        self.position += 1
        entry = self.forward.get(position)
        if entry is not None and (entry.kind != kind or entry.name != name):
            self._diverged(
                position,
                f"replay reached {kind} {name!r} at journal position {position}, but the "
                f"journal records {entry.kind} {entry.name!r} there",
            )
        return position, entry

    def _diverged(self, position: int, what: str) -> None:
        """Replay took another path than the journal: fail the run, saying where and why."""
        self._nondeterminism = NonDeterminismError(
            f"run {self.run.id} of saga {self.run.saga!r}: {what}. Either the saga's code "
            "changed while this run was in flight, or code between steps is not deterministic "
            "(random numbers, clock readings, unordered data such as sets, reads of files or "
            "databases outside a step: use ctx.now(), ctx.uuid(), or move it into a step). "
            "Restore the code the run started with, or fix it and `redrive` the run"
        )
        raise self._nondeterminism

    def call_step(self, step: StepDefinition, args: tuple, kwargs: dict) -> Any:
        """Run (or replay) one step call made by the saga function."""
        position, entry = self._next("step", step.name)
        digest = serde.arguments_digest(args, kwargs)
        if entry is not None:
            if entry.digest is not None and digest != entry.digest:
                self._diverged(
                    position,
                    f"replay called step {step.name!r} at journal position {position} with "
                    "other arguments than the recorded call",
                )
            if entry.status == "ok":
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
        started = time.time()
        ok, value, tries = self._attempt(
            step.name,
            position,
            step.fn,
            step.is_async,
            args,
            kwargs,
            step.retry,
            step.timeout,
            guards=step,
        )
        if not ok:
            doc = serde.error_doc(value, phase="forward", position=position, step=step.name)
            self._record(
                JournalEntry(
                    position,
                    FORWARD,
                    "step",
                    step.name,
                    "failed",
                    args_text,
                    None,
                    json.dumps(doc),
                    tries,
                    started,
                    time.time(),
                    digest,
                )
            )
            # The saga sees the error as a replay will: rebuilt from what was recorded.
            error = serde.rebuild_error(doc) or value
            self._failures[id(error)] = doc
            raise error from value
        result_text, result = value
        self._record(
            JournalEntry(
                position,
                FORWARD,
                "step",
                step.name,
                "ok",
                args_text,
                result_text,
                None,
                tries,
                started,
                time.time(),
                digest,
            )
        )
        if step.pivot:
            self.pivot_passed = True
            self._pivot_reached = True
        return result

    def _attempt(
        self,
        name: str,
        position: int,
        fn: Any,
        is_async: bool,
        args: tuple,
        kwargs: dict,
        retry: Any,
        timeout: float | None,
        compensating: bool = False,
        guards: StepDefinition | None = None,
    ) -> tuple[bool, Any, int]:
        """Call `fn` with retries, through the step's breaker, rate limit and bulkhead (parking
        while they refuse). Returns (True, (json, value), tries) or (False, error, tries)."""
        tries, delay = 0, None
        suffix = "/undo" if compensating else ""
        guarded = guards is not None and guards.guarded
        while True:
            permit = None
            if guarded:
                try:
                    permit = self._admit(guards, position)  # type: ignore[arg-type]
                except _Refused as refused:
                    return False, refused.error, tries
            tries += 1
            info = StepInfo(
                run_id=self.run.id,
                saga=self.run.saga,
                step=name,
                position=position,
                attempt=tries,
                idempotency_key=f"{self.run.id}/{position}{suffix}",
                compensating=compensating,
            )
            # Last thing before the body: a pause (a backoff, a flush, a stopped process) may
            # have outlived the lease, and another worker may have done this step meanwhile.
            self._hold_lease()
            started = time.monotonic()
            try:
                value = self.app.invoke(fn, is_async, args, kwargs, timeout, info)
            except BaseException as exc:
                if is_interrupt(exc):
                    raise
                if not isinstance(exc, Exception):
                    # sys.exit(), KeyboardInterrupt... from user code must not kill this
                    # thread: the try fails like any error (the policy decides on a retry).
                    log.warning(
                        "run %s: %s %r raised %s, which is not an Exception: it counts as "
                        "a failure of the try (raise an Exception to signal a failure)",
                        self.run.id,
                        "compensation of step" if compensating else "step",
                        name,
                        type(exc).__name__,
                    )
                if permit is not None:
                    permit.record_failure(exc, time.monotonic() - started)
                if guards is not None and isinstance(exc, Rejected) and exc.retry_after:
                    # A breaker or limiter inside the step refused: park, do not burn a try.
                    tries -= 1
                    try:
                        self._park(guards, position, exc)
                    except _Refused as refused:
                        return False, refused.error, tries
                    continue
                if isinstance(exc, SerializationError) or not retry.allows(exc, tries):
                    return False, unwrap_permanent(exc), tries
                delay = retry.delay(tries, delay)
                self._events.append(
                    self._event(
                        "retry",
                        step=name,
                        position=position,
                        attempt=tries,
                        compensating=compensating,
                        delay=round(delay, 4),
                        error=f"{type(exc).__name__}: {exc}",
                    )
                )
                self.app.metrics.retried(self.run.saga, name)
                self._pause(delay)
                continue
            finally:
                if guarded and guards.bulkhead is not None:  # type: ignore[union-attr]
                    guards.bulkhead.release()  # type: ignore[union-attr]
            if permit is not None:
                permit.record_success(time.monotonic() - started)
            retry.record_success()
            try:
                text = serde.dumps(value, f"the result of step {name!r}")
            except SerializationError as exc:
                return False, exc, tries
            if type(value) not in serde.SCALARS:  # JSON gives scalars back unchanged
                value = serde.loads(text)
            return True, (text, value), tries

    def _admit(self, step: StepDefinition, position: int) -> BreakerPermit | None:
        """Pass the step's breaker, rate limit and bulkhead, parking the run while one of
        them refuses. Returns the breaker's permit; the bulkhead slot is held on return.
        Raises _Refused once the step's `deadline` has passed."""
        while True:
            permit, slot = None, False
            try:
                if step.breaker is not None:
                    permit = step.breaker.acquire()
                if step.bulkhead is not None:
                    step.bulkhead.acquire(timeout=INLINE_SLEEP)
                    slot = True
                if step.rate_limit is not None:  # last: a token taken is never given back
                    wait = step.rate_limit.try_acquire()
                    if wait > 0:
                        raise RateLimited(
                            name=step.rate_limit.name, tokens=1, retry_after=wait, max_wait=0.0
                        )
                return permit
            except Rejected as refusal:
                if permit is not None:
                    permit.release()
                if slot:
                    step.bulkhead.release()  # type: ignore[union-attr]
                self._park(step, position, refusal)

    def _park(self, step: StepDefinition, position: int, refusal: Rejected) -> None:
        """Wait durably for a refusal to lift, within the step's `deadline`: inline when
        that is soon, else by resting the run until then. Raises _Refused past the deadline."""
        now = time.time()
        marker = f"{PARK_PREFIX}{step.name}"
        if self._parked is not None and self._parked[0] == position:
            deadline = self._parked[1]
        elif self.run.wait_name == marker and self.run.wait_position == position:
            deadline = self.run.wait_deadline  # parked before a rest: the deadline holds
        else:
            deadline = None if step.deadline is None else now + step.deadline
            self._events.append(
                self._event(
                    "parked",
                    step=step.name,
                    position=position,
                    reason=f"{type(refusal).__name__}: {refusal}",
                    deadline=deadline,
                )
            )
            self.app.metrics.parked(self.run.saga, step.name)
            self._flush()  # a park is worth knowing about even if this worker dies now
        self._parked = (position, deadline)
        if deadline is not None and now >= deadline:
            raise _Refused(refusal)
        until = now + (refusal.retry_after if refusal.retry_after is not None else 0.5)
        if deadline is not None:
            until = min(until, deadline)
        # Short refusals are waited out in this thread, but only for INLINE_SLEEP in all:
        # a longer outage rests the run, so that parked runs do not hold the workers.
        if self._parked_inline + (until - now) <= INLINE_SLEEP:
            self._parked_inline += max(0.0, until - now)
            self._pause(max(0.0, until - now))
            return
        raise _Suspend(until, (marker, position, deadline), signal=False)

    def wait(self, signal: str, timeout: float | None) -> Any:
        """ctx.wait: the payload of the next `signal`, durably."""
        position, entry = self._next("wait", signal)
        if entry is not None:
            if entry.status == "ok":
                return serde.loads(entry.result or "null")
            raise WaitTimeout(signal, timeout)
        if self.cancel_requested and not self.pivot_passed:
            raise _CancelRequested()
        try:
            found = self.store.pending_signal(
                self.run.id, signal, [sid for sid, _ in self._consumed]
            )
        except Exception as exc:
            raise self._store_failed(exc) from exc
        now = time.time()
        if found is not None:
            self._consumed.append((found.id, position))
            self._mark(position, "wait", signal, "ok", found.payload)
            return serde.loads(found.payload)
        run = self.run
        if run.wait_position == position and run.wait_name == signal:
            deadline = run.wait_deadline
        else:
            deadline = None if timeout is None else now + timeout
        if deadline is not None and now >= deadline:
            self._mark(position, "wait", signal, "timeout")
            raise WaitTimeout(signal, timeout)
        raise _Suspend(deadline, (signal, position, deadline))

    def sleep(self, seconds: float) -> None:
        """ctx.sleep: a durable timer."""
        position, entry = self._next("sleep", "sleep")
        if entry is not None:
            wake_at = float(serde.loads(entry.result or "0"))
        else:
            now = time.time()
            wake_at = now + max(0.0, float(seconds))
            self._mark(position, "sleep", "sleep", "ok", repr(wake_at))
        remaining = wake_at - time.time()
        if remaining <= 0:
            return
        if remaining <= INLINE_SLEEP:
            self._pause(remaining)
            return
        raise _Suspend(wake_at, None)

    def now(self) -> datetime:
        """ctx.now: the time, recorded once."""
        position, entry = self._next("now", "now")
        if entry is not None:
            value = float(serde.loads(entry.result or "0"))
        else:
            value = time.time()
            self._mark(position, "now", "now", "ok", repr(value))
        return datetime.fromtimestamp(value, UTC)

    # --- unwinding ---------------------------------------------------------------------------
    def _unwind(
        self, error: str | None = None, cancelled: bool = False, resume: bool = False
    ) -> None:
        """Compensate, newest first, every recorded step (done or failed) that has a
        compensation; end compensated/cancelled, or failed when a compensation gives up."""
        cancelled = cancelled or self.cancel_requested
        if resume:
            doc = json.loads(self.run.error) if self.run.error else None
            if doc and doc.get("phase") == "compensation":
                doc = doc.get("original")
            error = json.dumps(doc) if doc else None
        else:
            self._events.append(self._event("compensating", cancelled=cancelled))
            self._flush(RunUpdate(status="compensating", error=error))
        self.app.metrics.compensating(self.run.saga)
        steps = sorted(
            (e for e in self.forward.values() if e.kind == "step"),
            key=lambda e: e.position,
            reverse=True,
        )
        for entry in steps:
            done = self.undone.get(entry.position)
            if done is not None and done.status == "ok":
                continue
            step = self.app.steps.get(entry.name)
            undo = step.undo if step is not None else None
            if step is None or (undo is not None and entry.args is None):
                problem = RuntimeError(
                    f"cannot compensate step {entry.name!r} at position {entry.position}: "
                    + (
                        "this app no longer defines it"
                        if step is None
                        else "its arguments were not recorded (it had no compensation then)"
                    )
                    + "; fix the code or undo it by hand, then `redrive` the run"
                )
                self._compensation_failed(entry, problem, 0, error)
                return
            if undo is None:
                continue
            if not self._compensate(entry, undo, error):
                return
        self._finish("cancelled" if cancelled else "compensated", error=error)

    def _compensate(self, entry: JournalEntry, undo: Compensation, error: str | None) -> bool:
        self._before_effect(unwinding=True)
        saved = serde.loads(entry.args or "{}")
        kwargs = dict(saved.get("kwargs", {}))
        if undo.takes_result:
            kwargs["result"] = serde.loads(entry.result) if entry.status == "ok" else None
        started = time.time()
        ok, value, tries = self._attempt(
            entry.name,
            entry.position,
            undo.fn,
            undo.is_async,
            tuple(saved.get("args", [])),
            kwargs,
            undo.retry,
            undo.timeout,
            compensating=True,
        )
        if not ok:
            self._compensation_failed(entry, value, tries, error, started)
            return False
        self._record(
            JournalEntry(
                entry.position,
                COMPENSATION,
                "compensation",
                entry.name,
                "ok",
                None,
                value[0],
                None,
                tries,
                started,
                time.time(),
            )
        )
        self.app.metrics.compensated_step(self.run.saga, entry.name)
        return True

    def _compensation_failed(
        self,
        entry: JournalEntry,
        exc: BaseException,
        tries: int,
        original: str | None,
        started: float | None = None,
    ) -> None:
        now = time.time()
        doc = serde.error_doc(
            exc,
            phase="compensation",
            position=entry.position,
            step=entry.name,
            original=json.loads(original) if original else None,
        )
        text = json.dumps(doc)
        self._record(
            JournalEntry(
                entry.position,
                COMPENSATION,
                "compensation",
                entry.name,
                "failed",
                None,
                None,
                text,
                tries,
                started or now,
                now,
            )
        )
        self._escalate(
            entry.name,
            reason="compensation exhausted its retries",
            position=entry.position,
            error=f"{type(exc).__name__}: {exc}",
        )
        self._finish("failed", error=text)

    def _escalate(self, step: str | None, **details: Any) -> None:
        """The run ends `failed` and needs a person: record the event, count it, log it."""
        fields = {"step": step, **details} if step is not None else details
        self._events.append(self._event("escalation", **fields))
        self.app.metrics.escalated(self.run.saga, step)
        log.warning(
            "run %s of saga %r failed and needs attention (%s): see `sagaway runs show %s`",
            self.run.id,
            self.run.saga,
            ", ".join(f"{key}={value}" for key, value in fields.items()),
            self.run.id,
        )

    # --- writes ------------------------------------------------------------------------------
    def _record(self, entry: JournalEntry) -> None:
        if entry.phase == FORWARD:
            self.forward[entry.position] = entry
            if entry.status != "ok":  # a failed step or a timed-out wait: redrive reruns it
                self._last_failed = (entry.position, entry.name)
        else:
            self.undone[entry.position] = entry
        self._pending.append(entry)

    def _mark(
        self, position: int, kind: str, name: str, status: str, result: str | None = None
    ) -> None:
        """Record an instantaneous forward entry (a wait's outcome, a timer, a clock reading)."""
        now = time.time()
        self._record(
            JournalEntry(position, FORWARD, kind, name, status, None, result, None, 1, now, now)
        )

    def _event(self, kind: str, **data: Any) -> EventRecord:
        return EventRecord(self.run.id, time.time(), kind, json.dumps(data))

    def _error_text(self, exc: BaseException, **context: Any) -> str:
        return json.dumps(serde.error_doc(exc, **context))

    def _before_effect(self, unwinding: bool = False) -> None:
        """Make everything recorded so far durable before an effect may happen."""
        if self.worker.stopping.is_set():
            raise _Abandon(True)
        renew = self._lease_ending()
        if self._pending or self._consumed or self._events or self._pivot_reached or renew:
            self._flush(RunUpdate() if renew else None)
        if self.cancel_requested and not unwinding:
            if not self.pivot_passed:
                raise _CancelRequested()
            self._events.append(self._event("cancel_ignored", reason="run passed its pivot"))
            self.cancel_requested = False
            self._flush(RunUpdate(clear_cancel=True))

    def _flush(self, update: RunUpdate | None = None) -> None:
        now = time.time()
        if self._pivot_reached:
            update = update or RunUpdate()
            update.pivot_passed = True
        checkpoint = Checkpoint(
            run_id=self.run.id,
            epoch=self.epoch,
            now=now,
            lease_until=now + self.worker.lease,
            entries=self._pending,
            consumed=self._consumed,
            events=self._events,
            update=update,
        )
        try:
            self.cancel_requested = self.store.checkpoint(checkpoint)
        except LeaseLost:
            raise _Abandon(False, why="another worker took it over (lease lost)") from None
        except Exception as exc:
            raise self._store_failed(exc) from exc
        self._pending, self._consumed, self._events = [], [], []
        self._pivot_reached = False
        if update is not None and update.due_at is KEEP:
            self.lease_until = checkpoint.lease_until

    def _lease_ending(self) -> bool:
        """True unless the lease surely holds a third of a lease longer: then another worker
        cannot have taken the run over (its clock would have to be that far ahead)."""
        return time.time() > self.lease_until - self.worker.lease / 3

    def _hold_lease(self) -> None:
        """Before an effect: renew the lease (fenced) if it may be ending. A worker that was
        paused past its lease learns here that it lost the run, before doing anything."""
        if self._lease_ending():
            self._flush(RunUpdate())

    def _store_failed(self, error: Exception) -> _Abandon:
        """The database failed: stop here without the saga seeing the error (it is not the
        saga's failure) and hand the run back, due a second later; if even that fails, the
        lease (which only executing runs' heartbeats renew) expires and the run is recovered."""
        return _Abandon(True, retry_in=1.0, why=f"the store failed: {error!r}")

    def _suspend(self, rest: _Suspend) -> None:
        update = RunUpdate(
            status="waiting",
            due_at=rest.wake_at,
            owner=None,
            wait=rest.wait,
            rest=True,
        )
        self._flush(update)
        self.app.metrics.suspended(self.run.saga)

    def _release(self, delay: float = 0.0) -> None:
        """Hand the run back (with what it completed), due after `delay`; if even that
        fails, the lease expires and another worker recovers the run."""
        try:
            self._flush(RunUpdate(owner=None, due_at=time.time() + delay))
        except _Abandon:
            pass

    def _finish(self, status: str, result: str | None = None, error: str | None = None) -> None:
        update = RunUpdate(
            status=status, due_at=None, owner=None, result=result, error=error, wait=None
        )
        self._flush(update)
        self._outcome = (status, result, error)
        self.app.metrics.finished(self.run.saga, status, time.time() - self.run.created_at)

    def _pause(self, seconds: float) -> None:
        if self.worker.stopping.wait(seconds):
            raise _Abandon(True)
