"""What the executions of an App's runs need, handed to its worker and executions instead
of the App itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sagaway.engine._completions import Completions
from sagaway.engine._invoke import StepInvoker
from sagaway.engine._tracing import NO_TRACING, Tracing
from sagaway.engine.metrics import EngineMetrics
from sagaway.store.base import Store

if TYPE_CHECKING:
    from sagaway.engine.definitions import SagaDefinition, StepDefinition

__all__ = ["Runtime"]


@dataclass(frozen=True)
class Runtime:
    """The store, the App's declarations (read-only views: declaring more is seen), the
    metrics observer, the step invoker, the completions of runs executing here, how to
    wake this process's worker, and the tracer."""

    store: Store
    sagas: Mapping[str, SagaDefinition]
    steps: Mapping[str, StepDefinition]
    metrics: EngineMetrics
    invoker: StepInvoker
    completions: Completions
    # Tells this process's worker to look for due runs now (a child started or ended).
    wake: Callable[[], None] = lambda: None
    tracing: Tracing = NO_TRACING  # `sagaway.otel.instrument` makes runs traced
