"""Calling one try of a step or compensation body: `current_step()` set for it, its timeout
applied by `resilience.Timeout` (an async body is cancelled at the deadline, a plain one
abandoned in its thread: Python cannot stop a thread), its duration measured. Async bodies
run on an event loop thread of their own, shared by the App's steps."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from sagaway.engine.context import EXECUTION, OUTBOX, STEP, StepInfo
from sagaway.engine.metrics import EngineMetrics
from sagaway.resilience.timeout import Timeout
from sagaway.store.messages import NewMessage

__all__ = ["StepInvoker"]


class _Escaped:
    """A SystemExit or KeyboardInterrupt raised by an async body, carried out of the loop
    (asyncio lets these two stop the loop itself)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class StepInvoker:
    """Calls step and compensation bodies for the executions of one App."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def invoke(
        self,
        fn: Callable[..., Any],
        is_async: bool,
        timeout: Timeout | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        info: StepInfo,
        outbox: list[NewMessage] | None = None,
    ) -> Any:
        """One try of `fn(*args, **kwargs)`; raises what the body raised, or the
        timeout's error (`StepTimeout`) when it did not finish in time. What the body
        publishes goes to `outbox`."""
        started = time.perf_counter()
        ok = False
        try:
            value = self._call(fn, is_async, timeout, args, kwargs, info, outbox)
            ok = True
            return value
        finally:
            step = f"{info.step}/undo" if info.compensating else info.step
            self.metrics.step_finished(info.saga, step, time.perf_counter() - started, ok)

    def call(
        self,
        fn: Callable[..., Any],
        is_async: bool,
        timeout: Timeout | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """One call of a body that is not a step (a message handler), timeout applied."""
        return self._call(fn, is_async, timeout, args, kwargs, None, None)

    def _call(
        self,
        fn: Callable[..., Any],
        is_async: bool,
        timeout: Timeout | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        info: StepInfo | None,
        outbox: list[NewMessage] | None,
    ) -> Any:
        if is_async:
            caller = contextvars.copy_context()

            async def body() -> Any:
                # The task runs in a context of the loop's thread: give it the caller's values
                # (a trace's current span, the user's own variables), as a plain body's
                # timeout thread has them; not the execution, though: a step called in a
                # step's body is a plain call.
                for var, value in caller.items():
                    var.set(value)
                EXECUTION.set(None)
                STEP.set(info)
                OUTBOX.set(outbox)
                try:
                    if timeout is None:
                        return await fn(*args, **kwargs)
                    return await timeout.call(fn, *args, **kwargs)
                except (SystemExit, KeyboardInterrupt) as exc:
                    return _Escaped(exc)

            value = asyncio.run_coroutine_threadsafe(body(), self._event_loop()).result()
            if isinstance(value, _Escaped):
                raise value.error
            return value
        # A step called inside a step's body is a plain function call, not a saga step.
        outer = EXECUTION.set(None)
        token = STEP.set(info)
        held = OUTBOX.set(outbox)
        try:
            if timeout is None:
                return fn(*args, **kwargs)
            return timeout.call(fn, *args, **kwargs)  # in a thread of its own, context copied
        finally:
            OUTBOX.reset(held)
            STEP.reset(token)
            EXECUTION.reset(outer)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="sagaway-async-steps", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def close(self) -> None:
        """Stop the event loop of async bodies, if one was started."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if not loop.is_running():
            loop.close()
