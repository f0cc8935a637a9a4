"""Durable sagas: declarations, replay, compensation, workers and recovery."""

from sagaway.engine.app import App, StepTimeout
from sagaway.engine.context import SagaContext, StepInfo, current_step
from sagaway.engine.metrics import EngineMetrics
from sagaway.engine.run import Run, Step

__all__ = [
    "App",
    "EngineMetrics",
    "Run",
    "SagaContext",
    "Step",
    "StepInfo",
    "StepTimeout",
    "current_step",
]
