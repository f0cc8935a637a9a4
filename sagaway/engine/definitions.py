"""Saga, step and compensation definitions: what the decorators build."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sagaway.engine._attempts import Body
from sagaway.engine._branches import Call
from sagaway.engine.context import EXECUTION
from sagaway.errors import ConfigurationError, InvalidInput, StepTimeout
from sagaway.resilience.adaptive import AdaptiveLimit
from sagaway.resilience.breaker import CircuitBreaker
from sagaway.resilience.bulkhead import Bulkhead
from sagaway.resilience.ratelimit import RateLimiter
from sagaway.resilience.retry import Retry
from sagaway.resilience.timeout import Timeout

__all__ = ["Compensation", "SagaDefinition", "StepDefinition"]


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _same(value: Any, default: Any) -> bool:
    try:
        return value is default or bool(value == default)
    except Exception:  # an __eq__ that raises or returns an array
        return False


def _accepts_result(fn: Callable[..., Any]) -> bool:
    parameters = inspect.signature(fn).parameters.values()
    return any(p.name == "result" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _timeout(seconds: float | None, what: str) -> Timeout | None:
    """The per-try timeout of a step or compensation body (one behaviour for both: the
    resilience `Timeout`, raising `StepTimeout`)."""
    if seconds is None:
        return None
    if not seconds > 0:
        raise ConfigurationError(f"{what}: timeout must be positive seconds, got {seconds!r}")
    return Timeout(seconds, name=what, error=StepTimeout)


@dataclass(frozen=True)
class Compensation:
    """How to undo a step: the function, its retry policy and per-try timeout."""

    fn: Callable[..., Any]
    retry: Retry
    timeout: float | None
    is_async: bool
    takes_result: bool
    timeout_guard: Timeout | None = None


class StepDefinition:
    """A step: inside a saga, calls are journaled, retried and compensated; called
    outside a saga, it is the plain function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        retry: Retry,
        timeout: float | None,
        pivot: bool,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | AdaptiveLimit | None = None,
        rate_limit: RateLimiter | None = None,
        deadline: float | None = None,
        compensation_retry: Retry | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.pivot = pivot
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.rate_limit = rate_limit
        self.deadline = deadline
        self.guarded = breaker is not None or bulkhead is not None or rate_limit is not None
        self.is_async = inspect.iscoroutinefunction(fn)
        self.body = Body(fn, self.is_async, retry, _timeout(timeout, f"step {name!r}"))
        self.compensation_retry = compensation_retry or Retry()
        self.undo: Compensation | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        execution = EXECUTION.get()
        if execution is None:
            return self.fn(*args, **kwargs)
        return execution.call_step(self, args, kwargs)

    def bind(self, *args: Any, **kwargs: Any) -> Call:
        """This step called with these arguments, ready for `ctx.gather(...)`; nothing runs
        until the saga gathers it."""
        return Call(self, args, kwargs)

    def compensation(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Declare the function that undoes this step: `@step.compensation` or
        `@step.compensation(retry=..., timeout=...)`.

        It is called with the step's arguments, plus `result=` (the step's return value, or
        None when the step failed or timed out) if it accepts a `result` parameter. It must
        tolerate "nothing to undo". Returns the function unchanged.
        """

        def register(undo: Callable[..., Any]) -> Callable[..., Any]:
            if self.undo is not None:
                raise ConfigurationError(
                    f"step {self.name!r} already has compensation {self.undo.fn.__qualname__}: "
                    "a step has at most one"
                )
            self.undo = Compensation(
                fn=undo,
                retry=retry or self.compensation_retry,
                timeout=timeout,
                is_async=inspect.iscoroutinefunction(undo),
                takes_result=_accepts_result(undo),
                timeout_guard=_timeout(timeout, f"compensation of step {self.name!r}"),
            )
            return undo

        return register(fn) if fn is not None else register

    def __repr__(self) -> str:
        flags = " pivot" if self.pivot else ""
        return f"<step {self.name}{flags}>"


class SagaDefinition:
    """A saga: a function `fn(ctx, *args, **kwargs)` whose steps sagaway journals."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        functools.update_wrapper(self, fn)
        if inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"saga {name!r} is an async function: write sagas as plain functions "
                "(steps may be async; the saga calls them like plain functions)"
            )
        self.fn = fn
        self.name = name
        self.signature = inspect.signature(fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def identity(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The input as the saga function sees it: each parameter's value by name, leaving
        out parameters at their default. `start(s, "o", 1)`, `start(s, "o", amount=1)` and
        `start(s, "o", 1, currency="EUR")` with that default all give the same identity.
        Raises InvalidInput when the arguments do not fit the saga's signature."""
        try:
            bound = self.signature.bind(None, *args, **kwargs)  # None stands for ctx
        except TypeError as exc:
            raise InvalidInput(
                f"saga {self.name!r} cannot be started with these arguments ({exc}); its "
                f"signature is {self.name}{self.signature}"
            ) from None
        names = list(self.signature.parameters)
        found: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            default = self.signature.parameters[name].default
            if default is not inspect.Parameter.empty and _same(value, default):
                continue
            if not value and self.signature.parameters[name].kind in _VARIADIC:
                continue  # an empty *args or **kwargs
            found[name] = value
        return dict(sorted(found.items(), key=lambda item: names.index(item[0])))

    def difference(self, stored: str, given: dict[str, Any]) -> str:
        """Which arguments of a conflicting start (`given`, an identity) differ from the
        stored run's input, as one line."""
        try:
            data = json.loads(stored)
            before = self.identity(data["args"], data["kwargs"])
        except Exception:  # the saga's signature changed since: say nothing rather than guess
            return ""

        def show(value: Any) -> str:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
            return text if len(text) <= 60 else text[:57] + "..."

        parts = []
        for name in dict.fromkeys([*before, *given]):
            old, new = before.get(name, "(default)"), given.get(name, "(default)")
            if old != new:
                old_text = old if name not in before else show(old)
                new_text = new if name not in given else show(new)
                parts.append(f"{name}: {old_text} stored, {new_text} given")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"<saga {self.name}>"
