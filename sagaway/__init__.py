"""sagaway: durable sagas with automatic compensation, resilience and SLO monitoring.

The public API is what this module exports, plus `sagaway.resilience` and
`sagaway.observe`.
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
