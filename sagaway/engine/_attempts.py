"""The tries of one step call or compensation: through the step's guards (parking while they
refuse), each try bounded by its timeout, retried by its `Retry` policy with a `retry` event
for a person, until one succeeds or the policy gives up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sagaway.engine import _serde as serde
from sagaway.engine._branches import position_label
from sagaway.engine._checkpoint import RunWriter
from sagaway.engine._control import Refused, is_interrupt, unwrap_permanent
from sagaway.engine._invoke import StepInvoker
from sagaway.engine._parking import Parking, Slot, release_slot
from sagaway.engine.context import StepInfo
from sagaway.engine.metrics import EngineMetrics
from sagaway.errors import Rejected, SerializationError
from sagaway.resilience.breaker import BreakerPermit
from sagaway.resilience.retry import Retry
from sagaway.resilience.timeout import Timeout
from sagaway.store.base import RunRecord
from sagaway.store.messages import NewMessage

if TYPE_CHECKING:
    from sagaway.engine.definitions import StepDefinition

__all__ = ["Attempts", "Body", "Outcome"]

log = logging.getLogger("sagaway")


@dataclass(frozen=True)
class Body:
    """What to call for a step or compensation, and how patiently."""

    fn: Callable[..., Any]
    is_async: bool
    retry: Retry
    timeout: Timeout | None


class Outcome(NamedTuple):
    """How a call ended after `tries` tries: `ok` with its result (as recorded, `text`,
    and as the saga sees it, `value`), or failed with `error`. (A tuple: one is made per
    step call, on the hot path.)"""

    ok: bool
    tries: int
    text: str | None = None
    value: Any = None
    error: BaseException | None = None
    published: tuple[NewMessage, ...] = ()  # by the try that succeeded


class Attempts:
    """Makes the tries of one execution's step calls and compensations."""

    def __init__(
        self,
        run: RunRecord,
        writer: RunWriter,
        parking: Parking,
        invoker: StepInvoker,
        metrics: EngineMetrics,
        pause: Callable[[float], None],
    ) -> None:
        self.run, self.writer, self.parking = run, writer, parking
        self.invoker, self.metrics, self.pause = invoker, metrics, pause

    def call(
        self,
        name: str,
        position: int,
        body: Body,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        compensating: bool = False,
        guards: StepDefinition | None = None,
    ) -> Outcome:
        """Call `body` until it succeeds or its retry policy gives up."""
        tries, delay = 0, None
        suffix = "/undo" if compensating else ""
        guarded = guards is not None and guards.guarded
        while True:
            permit: BreakerPermit | None = None
            slot: Slot = False
            if guarded and guards is not None:
                try:
                    permit, slot = self.parking.admit(guards, position)
                except Refused as refused:
                    return Outcome(False, tries, error=refused.error)
            tries += 1
            info = StepInfo(
                run_id=self.run.id,
                saga=self.run.saga,
                step=name,
                position=position,
                attempt=tries,
                idempotency_key=f"{self.run.id}/{position_label(position)}{suffix}",
                compensating=compensating,
            )
            self.writer.hold_lease()
            started = time.monotonic()
            outbox: list[NewMessage] = []  # a failed try's messages are dropped with it
            try:
                value = self.invoker.invoke(
                    body.fn, body.is_async, body.timeout, args, kwargs, info, outbox
                )
            except BaseException as exc:
                if slot is not False and guards is not None:
                    # Given back now: a retry's backoff or a park must not hold the slot.
                    release_slot(guards, slot, exc)
                    slot = False
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
                        self.parking.park(guards, position, exc)
                    except Refused as refused:
                        return Outcome(False, tries, error=refused.error)
                    continue
                if isinstance(exc, SerializationError) or not body.retry.allows(exc, tries):
                    return Outcome(False, tries, error=unwrap_permanent(exc))
                delay = body.retry.delay(tries, delay)
                self.writer.event(
                    "retry",
                    step=name,
                    position=position,
                    attempt=tries,
                    compensating=compensating,
                    delay=round(delay, 4),
                    error=f"{type(exc).__name__}: {exc}",
                )
                self.metrics.retried(self.run.saga, name)
                self.pause(delay)
                continue
            finally:
                if slot is not False and guards is not None:
                    release_slot(guards, slot, None)
            if permit is not None:
                permit.record_success(time.monotonic() - started)
            body.retry.record_success()
            try:
                text = serde.dumps(value, f"the result of step {name!r}")
            except SerializationError as exc:
                return Outcome(False, tries, error=exc)
            if type(value) not in serde.SCALARS:  # JSON gives scalars back unchanged
                value = serde.loads(text)
            return Outcome(True, tries, text=text, value=value, published=tuple(outbox))
