"""What code inside a saga can see: the saga context `ctx` and `current_step()`."""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sagaway.messaging._outbox import new_message
from sagaway.store.messages import NewMessage

if TYPE_CHECKING:
    from sagaway.engine._execution import RunExecution

__all__ = ["EXECUTION", "OUTBOX", "STEP", "SagaContext", "StepInfo", "current_step"]

# The run execution driving the current thread's saga, if any.
EXECUTION: ContextVar[RunExecution | None] = ContextVar("sagaway_execution", default=None)


class StepInfo(NamedTuple):
    """The step (or compensation) whose body is running.

    `idempotency_key` is the same on every try, after a crash and on redrive: pass it to the
    service you call so that the effect happens once.
    """

    run_id: str
    saga: str
    step: str
    position: int
    attempt: int
    idempotency_key: str
    compensating: bool = False

    def publish(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
        delay: float | None = None,
        dedup_id: str | None = None,
    ) -> str:
        """Publish a message with this step's completion: it is committed in the same
        transaction as the completion, so it exists if and only if the completion is
        recorded (a failed try publishes nothing; a retried step publishes once). Returns
        the message's id, the same if the step is run again after a crash. `delay` holds it
        back from consumers for that many seconds; `dedup_id` keeps at most one message per
        (topic, dedup_id) while it is retained. Raises ConfigurationError or
        SerializationError (a payload that is not JSON data) at once."""
        outbox = OUTBOX.get()
        if outbox is None:
            raise RuntimeError("publish() works in the step body that current_step() describes")
        origin = f"{self.idempotency_key}/{len(outbox)}"
        message = new_message(
            topic, payload, key=key, delay=delay, dedup_id=dedup_id, origin=origin
        )
        outbox.append(message)
        return message.id


STEP: ContextVar[StepInfo | None] = ContextVar("sagaway_step", default=None)
# The messages the running try of a step body published: kept only if the try succeeds.
OUTBOX: ContextVar[list[NewMessage] | None] = ContextVar("sagaway_outbox", default=None)


def current_step() -> StepInfo:
    """The step whose body is running. Raises RuntimeError outside a step body."""
    info = STEP.get()
    if info is None:
        raise RuntimeError(
            "current_step() is only available inside a step or compensation body that a saga "
            "is running (not in saga code between steps, nor in a direct call of the function)"
        )
    return info


_UUID_NAMESPACE = uuid.UUID("5a6a7761-7900-4000-8000-000000000000")


class SagaContext:
    """The first argument of every saga function: durable waits, timers, the run's
    deterministic clock and ids, and fan-out (map, gather, child runs). Everything here
    gives the same answer when a run replays."""

    def __init__(self, execution: RunExecution) -> None:
        self._execution = execution
        self._uuids = 0

    @property
    def run_id(self) -> str:
        """The id of the run."""
        return self._execution.run.id

    def wait(self, signal: str, timeout: float | None = None) -> Any:
        """Wait durably for the next `signal` sent with `app.signal`; return its payload.

        A signal sent before the saga reaches this wait is kept and returned at once. The run
        holds no worker while it waits. Raises `WaitTimeout` after `timeout` seconds.
        """
        return self._execution.wait(signal, timeout)

    def publish(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
        delay: float | None = None,
        dedup_id: str | None = None,
    ) -> str:
        """Publish a message from the saga body, journaled like a step: committed once, with
        the run's next write, and not again on replay. Returns the message's id."""
        return self._execution.publish(topic, payload, key, delay, dedup_id)

    def patched(self, name: str) -> bool:
        """Whether this run takes the new path of a code change named `name`.

        True where the run reaches this point on the new code (it records that it did);
        False where its journal shows it already went past this point on the old code.
        Write `if ctx.patched("new-tax-rule"): <new> else: <old>`; once no run that started
        on the old code is in flight, replace it with `ctx.deprecate_patch(name)` and the new
        path alone, and later remove that call too. See docs/evolving.md."""
        return self._execution.patched(name)

    def deprecate_patch(self, name: str) -> None:
        """The cleanup step of `patched(name)`: keeps replaying runs that recorded the patch
        correct after the old path was deleted; records nothing new."""
        self._execution.patched(name, deprecated=True)

    def sleep(self, seconds: float) -> None:
        """Pause the saga durably: a crash or restart does not reset the timer."""
        self._execution.sleep(seconds)

    def now(self) -> datetime:
        """The current time (UTC), recorded on first execution and replayed after."""
        return self._execution.now()

    # --- fan-out ----------------------------------------------------------------------------
    def map(
        self,
        fn: Any,
        items: list[Any],
        *,
        concurrency: int | None = None,
        tolerated_failures: int | float = 0,
    ) -> list[Any]:
        """`fn(item)` for every item, at most `concurrency` at once; the results in input
        order, whatever the order they completed in.

        `fn` is a step (its branches run on this worker's threads; an `async def` step's on
        the App's event loop) or a saga (each item starts a child run any worker may claim,
        and this run rests until they end). Each branch is journaled once: after a crash,
        finished branches are not run again. `tolerated_failures`: an int is a count, a
        float below 1 a fraction of the items (rounded down); a tolerated failure's place
        holds its exception. Past it no further branch starts, the branches under way are
        awaited, and `MapFailed` is raised; uncaught, every branch that ran is compensated,
        newest completion first. `concurrency=None`: children all at once, steps on up to 32
        threads.
        """
        from sagaway.engine._fanout import map_items

        return map_items(self._execution, fn, items, concurrency, tolerated_failures)

    def gather(self, *calls: Any) -> list[Any]:
        """Run the step calls `step.bind(*args, **kwargs)` at once; their results in the
        order given. Any failure fails it as a map that tolerates none (`MapFailed`)."""
        from sagaway.engine._fanout import gather

        return gather(self._execution, calls)

    def child(self, saga: Any, *args: Any, key: str | None = None, **kwargs: Any) -> Any:
        """Run `saga(*args, **kwargs)` as a child run that any worker may claim, resting
        until it ends; return its result, or raise its outcome (`SagaCompensated`,
        `SagaFailed`, `SagaCancelled`). `key` defaults to one derived from this run and the
        call's position. If this saga later unwinds, a child that succeeded is compensated
        as a run."""
        from sagaway.engine._children import run_child

        return run_child(self._execution, saga, args, kwargs, key)

    def uuid(self) -> uuid.UUID:
        """A UUID unique to this run and call, identical on replay."""
        self._uuids += 1
        return uuid.uuid5(_UUID_NAMESPACE, f"{self.run_id}:{self._uuids}")
