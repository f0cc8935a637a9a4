"""Durable sagas: declarations, replay, compensation, workers and recovery."""

from sagaway.engine._parking import parked_step
from sagaway.engine.app import App
from sagaway.engine.context import SagaContext, StepInfo, current_step
from sagaway.engine.metrics import EngineMetrics
from sagaway.engine.run import Run, Step
from sagaway.errors import StepTimeout

__all__ = [
    "App",
    "EngineMetrics",
    "Run",
    "SagaContext",
    "Step",
    "StepInfo",
    "StepTimeout",
    "current_step",
    "parked_step",
]
