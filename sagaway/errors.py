"""The exceptions users can catch. Every message says what was wrong and what to do."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConnectionBudgetExhausted",
    "IdempotencyConflict",
    "InvalidRunState",
    "LeaseLost",
    "NonDeterminismError",
    "ObserveError",
    "RemoteError",
    "RunNotFound",
    "SagaCancelled",
    "SagaCompensated",
    "SagaFailed",
    "SagaOutcome",
    "SagawayError",
    "SchemaVersionError",
    "SerializationError",
    "StoreUnavailable",
    "UnknownSaga",
    "WaitTimeout",
]


class SagawayError(Exception):
    """Base class of every error sagaway raises on its own account."""


class ConfigurationError(SagawayError, ValueError):
    """A saga, step or App was declared in a way that cannot work."""


class ObserveError(SagawayError):
    """Base of the errors `sagaway.observe` raises: bad filter patterns, alarm definitions,
    configuration and SLO files, malformed log lines, unreadable engine metrics, failed
    notifications. Each also keeps the builtin base it had (ValueError, RuntimeError...)."""


class SerializationError(SagawayError, TypeError):
    """A saga input, step argument or step result could not be stored as JSON."""


class IdempotencyConflict(SagawayError):
    """`start` was called with a key already used for a different input."""

    def __init__(self, saga: str, key: str, run_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} of saga {saga!r} is already used by run {run_id} with a "
            "different input: reuse the key only for the same request, or choose a new key"
        )
        self.saga, self.key, self.run_id = saga, key, run_id


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

    def __reduce__(self) -> tuple:
        return (type(self), (self.signal, self.timeout))


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
