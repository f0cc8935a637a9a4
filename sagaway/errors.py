"""Every exception sagaway raises, under one root users can catch: `SagawayError`.

Every message says what was wrong and what to do. The saga outcomes (`SagaOutcome`), the
store's errors, the resilience primitives' refusals (`ResilienceError`) and step timeouts
all live here. Apart from the root on purpose: `Permanent` (in `sagaway.resilience`), which
user code raises to skip retries, and the engine's private control-flow signals, which are
`BaseException`s so that saga code catching `Exception` cannot swallow them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BreakerOpen",
    "BulkheadFull",
    "ConfigurationError",
    "ConnectionBudgetExhausted",
    "IdempotencyConflict",
    "InvalidInput",
    "InvalidRunState",
    "LeaseLost",
    "LimitExceeded",
    "MapFailed",
    "MissingExtra",
    "NonDeterminismError",
    "ObserveError",
    "RateLimited",
    "Rejected",
    "RemoteError",
    "ResilienceError",
    "RunNotFound",
    "SagaCancelled",
    "SagaCompensated",
    "SagaFailed",
    "SagaOutcome",
    "SagawayError",
    "SchemaVersionError",
    "SerializationError",
    "StepTimeout",
    "StoreUnavailable",
    "TimeoutExceeded",
    "UnknownSaga",
    "WaitTimeout",
]


class SagawayError(Exception):
    """Base class of every error sagaway raises on its own account."""


class ConfigurationError(SagawayError, ValueError):
    """A saga, step or App was declared in a way that cannot work."""


class MissingExtra(SagawayError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra
    that brings it (`.extra`) and the pip command that installs it."""

    def __init__(self, extra: str, feature: str, cause: ImportError) -> None:
        missing = f"no module named {cause.name!r}" if cause.name else str(cause)
        super().__init__(
            f"{feature} needs sagaway's {extra!r} extra, which is not installed ({missing}): "
            f"pip install 'sagaway[{extra}]'",
            name=cause.name,
        )
        self.extra = extra


class ObserveError(SagawayError):
    """Base of the errors `sagaway.observe` raises: bad filter patterns, alarm definitions,
    configuration and SLO files, malformed log lines, unreadable engine metrics, failed
    notifications. Each also keeps the builtin base it had (ValueError, RuntimeError...)."""


class SerializationError(SagawayError, TypeError):
    """A saga input, step argument or step result could not be stored as JSON."""


class InvalidInput(SagawayError, TypeError):
    """The arguments given to `start` do not fit the saga function's signature."""


class IdempotencyConflict(SagawayError):
    """`start` was called with a key already used for a different input; `difference`
    says which arguments differ."""

    def __init__(self, saga: str, key: str, run_id: str, difference: str = "") -> None:
        differs = f" ({difference})" if difference else ""
        super().__init__(
            f"idempotency key {key!r} of saga {saga!r} is already used by run {run_id} with a "
            f"different input{differs}: reuse the key only for the same request, or choose a "
            "new key"
        )
        self.saga, self.key, self.run_id = saga, key, run_id
        self.difference = difference


class RunNotFound(SagawayError, LookupError):
    """No run has the given id in this store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r} in this store (list runs with `runs list`)")
        self.run_id = run_id


class InvalidRunState(SagawayError):
    """The run is not in a status that allows the requested operation."""


class UnknownSaga(SagawayError, LookupError):
    """A run names a saga this App does not define."""


class NonDeterminismError(SagawayError):
    """Replaying a saga called its steps in a different order than the recorded journal."""


class LeaseLost(SagawayError):
    """This worker no longer owns the run: another worker took it over (fencing)."""


class StoreUnavailable(SagawayError):
    """The store cannot be opened or reached."""


class ConnectionBudgetExhausted(StoreUnavailable):
    """Every connection this process may open to the database was busy for the whole wait:
    the message names the budget (e.g. PostgreSQL's `pool_size`) and how to raise it."""


class SchemaVersionError(SagawayError):
    """The database was written by a newer sagaway than this one."""


class WaitTimeout(SagawayError, TimeoutError):
    """Raised inside a saga when `ctx.wait` times out before its signal arrives."""

    def __init__(self, signal: str, timeout: float | None) -> None:
        super().__init__(f"no {signal!r} signal arrived within {timeout} s")
        self.signal, self.timeout = signal, timeout

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.signal, self.timeout))


class MapFailed(SagawayError):
    """More branches of a `ctx.map` (or any of a `ctx.gather`) failed than it tolerates.

    `failures` lists `(index, error)` of every failed branch in input order; `total` is the
    number of items, `tolerated` how many failures the map allowed. Uncaught, the saga
    compensates every branch that ran. Rebuilt from a run's record (`SagaCompensated.error`),
    each error is a `RemoteError` with the recorded type and message.
    """

    def __init__(
        self, what: str, total: int, tolerated: int, failures: list[tuple[int, BaseException]]
    ) -> None:
        shown = "; ".join(f"#{i}: {type(e).__name__}: {e}" for i, e in failures[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(
            f"{what}: {len(failures)} of {total} branch(es) failed, more than the "
            f"{tolerated} tolerated ({shown}{more})"
        )
        self.what, self.total, self.tolerated = what, total, tolerated
        # Plain data, kept in a run's record: (index, "Type", "message") of each failure.
        self.failed: list[tuple[int, str, str]] = [
            (i, type(e).__name__, str(e)) for i, e in failures
        ]
        self._errors: list[tuple[int, BaseException]] | None = failures

    @property
    def failures(self) -> list[tuple[int, BaseException]]:
        """(index, error) of each failed branch, in input order."""
        errors: list[tuple[int, BaseException]] | None = self.__dict__.get("_errors")
        if errors is not None:
            return errors
        return [(int(i), RemoteError(str(kind), str(text))) for i, kind, text in self.failed]

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.what, self.total, self.tolerated, self.failures))


class RemoteError(SagawayError):
    """Stands in for a recorded error whose class cannot be rebuilt in this process."""

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message, self.traceback = type_name, message, traceback


class SagaOutcome(SagawayError):
    """Base of the exceptions `Run.result()` raises when a run did not succeed.

    `error` is the error that decided the outcome (the original exception when it can be
    rebuilt, else a `RemoteError`); `run_id` names the run.
    """

    status = ""

    def __init__(self, run_id: str, error: BaseException | None, detail: str = "") -> None:
        what = f": {type(error).__name__}: {error}" if error is not None else ""
        super().__init__(f"run {run_id} {self.status}{what}{detail}")
        self.run_id, self.error = run_id, error
        self.__cause__ = error


class SagaCompensated(SagaOutcome):
    """The saga failed and every compensation ran: a clean rollback."""

    status = "compensated"


class SagaFailed(SagaOutcome):
    """The run needs a person: a compensation or a step after the pivot exhausted its
    retries, or the saga's code changed under a running saga. `redrive` resumes it."""

    status = "failed"


class SagaCancelled(SagaOutcome):
    """The run was cancelled; what it had done was compensated."""

    status = "cancelled"


# --- the resilience primitives ----------------------------------------------------------
def _rebuild(
    cls: type[ResilienceError], args: tuple[Any, ...], state: dict[str, Any]
) -> ResilienceError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ResilienceError(SagawayError):
    """Base of every error a resilience primitive raises; `name` is the primitive's name.

    Errors pickle and unpickle with all their attributes (to cross process boundaries).
    """

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


class Rejected(ResilienceError):
    """The call was refused without calling the function.

    `retry_after` is the number of seconds after which a new attempt may be admitted
    (None when the primitive cannot tell).
    """

    def __init__(self, message: str, *, name: str, retry_after: float | None) -> None:
        super().__init__(message, name=name)
        self.retry_after = retry_after


class BreakerOpen(Rejected):
    """A circuit breaker refused the call.

    `state` is the breaker's state at refusal (a `BreakerState`, which is a str):
    "open", "half_open" with every trial slot taken, or "forced_open". `retry_after` is
    the seconds until the breaker will next admit a trial call; `retry_at` is the same
    moment as wall-clock seconds since the epoch (`time.time()` scale), suitable for
    parking work durably. `reason` says why the breaker opened.
    """

    def __init__(
        self, *, name: str, state: str, retry_after: float, retry_at: float, reason: str = ""
    ) -> None:
        # Refusing must stay cheap while a breaker is open under load: the message is
        # formatted only if someone reads it.
        Exception.__init__(self, name, state)
        self.name = name
        self.retry_after = retry_after
        self.state = state
        self.retry_at = retry_at
        self.reason = reason

    def __str__(self) -> str:
        detail = f" ({self.reason})" if self.reason else ""
        return (
            f"circuit breaker {self.name!r} is {self.state}{detail}: call not permitted, "
            f"next trial in {self.retry_after:.3f}s"
        )


class BulkheadFull(Rejected):
    """A bulkhead had no free slot within its `max_wait`; `waited` is how long we waited."""

    def __init__(self, *, name: str, max_concurrent: int, waited: float) -> None:
        super().__init__(
            f"bulkhead {name!r} is full: {max_concurrent} calls already running "
            f"(waited {waited:.3f}s for a slot)",
            name=name,
            retry_after=None,
        )
        self.max_concurrent = max_concurrent
        self.waited = waited


class LimitExceeded(Rejected):
    """An `AdaptiveLimit` had no permit to give: `limit` calls (scaled by the caller's `share`)
    were already in flight. `retry_after` is about how long a call takes now, the time a
    permit usually frees in."""

    def __init__(
        self, *, name: str, limit: int, in_flight: int, share: float, retry_after: float
    ) -> None:
        scaled = f" x share {share:g}" if share != 1.0 else ""
        super().__init__(
            f"adaptive limit {name!r} is full: {in_flight} calls in flight, limit {limit}"
            f"{scaled}; try again in about {retry_after:.3f}s (the limit follows the measured "
            "latency, so it may have moved by then)",
            name=name,
            retry_after=retry_after,
        )
        self.limit = limit
        self.in_flight = in_flight
        self.share = share


class RateLimited(Rejected):
    """A rate limiter had no token due within the allowed wait.

    `retry_after` is the seconds until the requested tokens will be due (they were not
    taken: a later attempt must ask again).
    """

    def __init__(self, *, name: str, tokens: float, retry_after: float, max_wait: float) -> None:
        super().__init__(
            f"rate limiter {name!r}: {tokens:g} token(s) due in {retry_after:.3f}s, "
            f"more than the allowed wait of {max_wait:.3f}s",
            name=name,
            retry_after=retry_after,
        )
        self.tokens = tokens
        self.max_wait = max_wait


class TimeoutExceeded(ResilienceError, TimeoutError):
    """A call took longer than its `Timeout`; also a builtin `TimeoutError`.

    For coroutines the call was cancelled. For plain functions it was abandoned: it keeps
    running in its worker thread, and its eventual result is discarded.
    """

    def __init__(self, *, name: str, seconds: float, abandoned: bool) -> None:
        how = "abandoned in its thread" if abandoned else "cancelled"
        super().__init__(f"{name} timed out after {seconds:g}s (call {how})", name=name)
        self.seconds = seconds
        self.abandoned = abandoned


class StepTimeout(TimeoutExceeded):
    """A step or compensation try did not finish within the step's `timeout`: the try
    counts as failed (an async body was cancelled, a plain one abandoned in its thread)."""
