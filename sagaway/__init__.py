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
    StepTimeout,
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
    RemoteError,
    RunNotFound,
    SagaCancelled,
    SagaCompensated,
    SagaFailed,
    SagawayError,
    SchemaVersionError,
    SerializationError,
    StoreUnavailable,
    UnknownSaga,
    WaitTimeout,
)
from sagaway.resilience import Permanent, Retry

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
    "Permanent",
    "RemoteError",
    "Retry",
    "Run",
    "RunNotFound",
    "SagaCancelled",
    "SagaCompensated",
    "SagaContext",
    "SagaFailed",
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
