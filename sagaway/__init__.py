"""sagaway: durable sagas with automatic compensation, resilience and SLO monitoring.

The public API is what this module exports, plus the exports of the packages that
docs/stability.md names (`sagaway.resilience`, `sagaway.observe`, ...); everything else may
change in any release.
"""

from sagaway.engine import (
    App,
    EngineMetrics,
    Run,
    SagaContext,
    Step,
    StepInfo,
    current_step,
)
from sagaway.errors import (
    ConfigurationError,
    ConnectionBudgetExhausted,
    IdempotencyConflict,
    InvalidInput,
    InvalidRunState,
    LeaseLost,
    MapFailed,
    MissingExtra,
    NonDeterminismError,
    ObserveError,
    RemoteError,
    RunNotFound,
    SagaCancelled,
    SagaCompensated,
    SagaFailed,
    SagaOutcome,
    SagawayError,
    SchemaVersionError,
    SerializationError,
    StepTimeout,
    StoreUnavailable,
    UnknownSaga,
    WaitTimeout,
)
from sagaway.resilience import Permanent, Retry
from sagaway.store.base import RunStatus

__version__ = "0.1.0"
__all__ = [
    "App",
    "ConfigurationError",
    "ConnectionBudgetExhausted",
    "EngineMetrics",
    "IdempotencyConflict",
    "InvalidInput",
    "InvalidRunState",
    "LeaseLost",
    "MapFailed",
    "MissingExtra",
    "NonDeterminismError",
    "ObserveError",
    "Permanent",
    "RemoteError",
    "Retry",
    "Run",
    "RunNotFound",
    "RunStatus",
    "SagaCancelled",
    "SagaCompensated",
    "SagaContext",
    "SagaFailed",
    "SagaOutcome",
    "SagawayError",
    "SchemaVersionError",
    "SerializationError",
    "Step",
    "StepInfo",
    "StepTimeout",
    "StoreUnavailable",
    "UnknownSaga",
    "WaitTimeout",
    "__version__",
    "current_step",
]
