"""Flow control as a saga declares it: `@app.saga(concurrency=, concurrency_key=, priority=)`,
checked when declared, and evaluated once per run when it starts (the store keeps the result,
so code deployed later cannot reorder runs already queued; see `store/flow.py`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sagaway.errors import ConfigurationError, InvalidInput
from sagaway.store.flow import FlowControl

__all__ = ["FlowSpec"]

# Priorities are stored as 32-bit integers (PostgreSQL's INTEGER).
PRIORITY_RANGE = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class FlowSpec:
    """A saga's limit of `concurrency` runs per key at once, the function giving a run's key
    (None: one limit for every run of the saga, key "") and its priority (None: 0)."""

    concurrency: int
    key: Callable[..., Any] | None = None
    priority: Callable[..., Any] | None = None

    @classmethod
    def declare(
        cls,
        saga: str,
        concurrency: int | None,
        key: Callable[..., Any] | None,
        priority: Callable[..., Any] | None,
    ) -> FlowSpec | None:
        """The flow control of `@app.saga(name=saga, ...)`, or None without a limit. Raises
        ConfigurationError for arguments that do not make one."""
        where = f"@app.saga() of saga {saga!r}"
        if concurrency is None:
            if key is not None or priority is not None:
                given = "concurrency_key" if key is not None else "priority"
                raise ConfigurationError(
                    f"{where}: {given}= needs concurrency=N, the number of runs (per key) that "
                    "may execute at once; without a limit no run ever waits for a slot"
                )
            return None
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(
                f"{where}: concurrency must be a positive int (runs per key executing at "
                f"once), got {concurrency!r}"
            )
        for name, fn in (("concurrency_key", key), ("priority", priority)):
            if fn is not None and not callable(fn):
                raise ConfigurationError(
                    f"{where}: {name} must be a function of the saga's arguments (without "
                    f"ctx), e.g. {name}=lambda order: order['shop'], got {fn!r}"
                )
        return cls(concurrency, key, priority)

    def evaluate(self, saga: str, input_text: str) -> FlowControl:
        """The run's key and priority, from its stored input (`{"args", "kwargs"}` JSON): the
        functions get the arguments as the saga function will, minus ctx. Raises InvalidInput
        when one fails or returns the wrong type."""
        data = json.loads(input_text)
        args, kwargs = data["args"], data["kwargs"]
        key: Any = (
            "" if self.key is None else self._call(saga, "concurrency_key", self.key, args, kwargs)
        )
        if not isinstance(key, str):
            raise InvalidInput(
                f"saga {saga!r}: concurrency_key returned {key!r} ({type(key).__name__}); "
                "it must return a str, e.g. str(order['shop']); nothing was started"
            )
        priority: Any = 0
        if self.priority is not None:
            priority = self._call(saga, "priority", self.priority, args, kwargs)
        low, high = PRIORITY_RANGE
        if (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not low <= priority <= high
        ):
            raise InvalidInput(
                f"saga {saga!r}: priority returned {priority!r}; it must return an int "
                f"from {low} to {high} (higher runs first); nothing was started"
            )
        return FlowControl(key, self.concurrency, priority)

    @staticmethod
    def _call(
        saga: str, name: str, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise InvalidInput(
                f"saga {saga!r}: {name} raised {type(exc).__name__}: {exc} when called with "
                "the run's arguments (those of the saga function, without ctx); nothing was "
                "started"
            ) from exc
