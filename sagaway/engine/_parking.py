"""Admission and parking: a step's breaker, rate limit and bulkhead are passed before every
try. A refusal spends no try: short refusals are waited out in the worker thread (at most
`INLINE_WAIT` in all), longer ones rest the run on a wait named `park:<step>` until the
refusal's `retry_after`, bounded by the step's `deadline`, which is kept across rests in the
run row. Past the deadline the step fails with the refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sagaway.engine._checkpoint import RunWriter
from sagaway.engine._control import Refused, Suspend
from sagaway.engine.metrics import EngineMetrics
from sagaway.errors import RateLimited, Rejected
from sagaway.resilience.adaptive import AdaptiveLimit, LimitPermit
from sagaway.resilience.breaker import BreakerPermit
from sagaway.resilience.bulkhead import Bulkhead
from sagaway.store.base import RunRecord, Wait

if TYPE_CHECKING:
    from sagaway.engine.definitions import StepDefinition

__all__ = ["INLINE_WAIT", "Parking", "Slot", "parked_step", "release_slot"]

# Sleeps, waits and refusals this short are taken in the worker thread instead of resting
# the run.
INLINE_WAIT = 1.0
# A run parked by a step's breaker, rate limit or bulkhead rests on a wait of this name.
_PARK_PREFIX = "park:"


def parked_step(wait_name: str | None) -> str | None:
    """The step a resting run is parked on (its wait is a park, not a signal), else None."""
    if wait_name is not None and wait_name.startswith(_PARK_PREFIX):
        return wait_name.removeprefix(_PARK_PREFIX)
    return None


# What `admit` holds of a step's bulkhead: an `AdaptiveLimit`'s permit, or whether a
# `Bulkhead` slot is held.
Slot = LimitPermit | bool


def release_slot(step: StepDefinition, slot: Slot, error: BaseException | None) -> None:
    """Give back the step's bulkhead slot taken by `admit`; an `AdaptiveLimit` learns how
    the try ended (`error`: None for a success)."""
    if isinstance(slot, LimitPermit):
        slot.finish(error)
    elif slot and isinstance(step.bulkhead, Bulkhead):
        step.bulkhead.release()


class Parking:
    """The admission of one execution's guarded steps."""

    def __init__(
        self,
        run: RunRecord,
        writer: RunWriter,
        metrics: EngineMetrics,
        pause: Callable[[float], None],
    ) -> None:
        self.run, self.writer, self.metrics, self.pause = run, writer, metrics, pause
        self._parked: tuple[int, float | None] | None = None  # (position, deadline)
        self._inline = 0.0  # seconds this execution waited out refusals in its thread

    def admit(self, step: StepDefinition, position: int) -> tuple[BreakerPermit | None, Slot]:
        """Pass the step's breaker, rate limit and bulkhead, parking while one of them
        refuses. Returns the breaker's permit and the bulkhead slot, held on return
        (`release_slot` gives it back). Raises Refused once the step's `deadline` has
        passed."""
        while True:
            permit: BreakerPermit | None = None
            slot: Slot = False
            try:
                if step.breaker is not None:
                    permit = step.breaker.acquire()
                if isinstance(step.bulkhead, AdaptiveLimit):
                    slot = step.bulkhead.acquire()  # never waits: a full limit parks
                elif step.bulkhead is not None:
                    step.bulkhead.acquire(timeout=INLINE_WAIT)
                    slot = True
                if step.rate_limit is not None:  # last: a token taken is never given back
                    wait = step.rate_limit.try_acquire()
                    if wait > 0:
                        raise RateLimited(
                            name=step.rate_limit.name, tokens=1, retry_after=wait, max_wait=0.0
                        )
                return permit, slot
            except Rejected as refusal:
                if permit is not None:
                    permit.release()
                if isinstance(slot, LimitPermit):
                    slot.ignore()  # the try never started: nothing to learn from
                else:
                    release_slot(step, slot, None)
                self.park(step, position, refusal)

    def park(self, step: StepDefinition, position: int, refusal: Rejected) -> None:
        """Wait durably for a refusal to lift, within the step's `deadline`: inline when
        that is soon, else by resting the run until then. Raises Refused past the deadline."""
        now = self.writer.store.now()
        marker = f"{_PARK_PREFIX}{step.name}"
        deadline: float | None
        if self._parked is not None and self._parked[0] == position:
            deadline = self._parked[1]
        elif self.run.wait_name == marker and self.run.wait_position == position:
            deadline = self.run.wait_deadline  # parked before a rest: the deadline holds
        else:
            deadline = None if step.deadline is None else now + step.deadline
            self.writer.event(
                "parked",
                step=step.name,
                position=position,
                reason=f"{type(refusal).__name__}: {refusal}",
                deadline=deadline,
            )
            self.metrics.parked(self.run.saga, step.name)
            self.writer.flush()  # a park is worth knowing about even if this worker dies now
        self._parked = (position, deadline)
        if deadline is not None and now >= deadline:
            raise Refused(refusal)
        until = now + (refusal.retry_after if refusal.retry_after is not None else 0.5)
        if deadline is not None:
            until = min(until, deadline)
        # Short refusals are waited out in this thread, but only for INLINE_WAIT in all:
        # a longer outage rests the run, so that parked runs do not hold the workers.
        if self._inline + (until - now) <= INLINE_WAIT:
            self._inline += max(0.0, until - now)
            self.pause(max(0.0, until - now))
            return
        raise Suspend(until, Wait(marker, position, deadline), signal=False)
