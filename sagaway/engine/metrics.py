"""The engine's measurement hooks. The engine calls them; `sagaway.observe` records them."""

from __future__ import annotations

__all__ = ["EngineMetrics"]


class EngineMetrics:
    """Receives what the engine measures. This base records nothing; subclass it (or use
    `sagaway.observe.engine_metrics`) and pass it as `App(metrics=...)`. Methods are called
    from worker threads and must be quick and thread-safe."""

    def started(self, saga: str) -> None:
        """A run was created."""

    def finished(self, saga: str, status: str, seconds: float) -> None:
        """A run ended with `status`, `seconds` after it was created."""

    def step_finished(self, saga: str, step: str, seconds: float, ok: bool) -> None:
        """One try of a step (or compensation) body ended."""

    def retried(self, saga: str, step: str) -> None:
        """A step or compensation will be tried again."""

    def compensating(self, saga: str) -> None:
        """A run began (or resumed) unwinding."""

    def compensated_step(self, saga: str, step: str) -> None:
        """One compensation completed."""

    def escalated(self, saga: str, step: str | None) -> None:
        """A run needs a person (a compensation or post-pivot step gave up)."""

    def parked(self, saga: str, step: str) -> None:
        """A step was refused by its breaker, rate limit or bulkhead and its run parked."""

    def suspended(self, saga: str) -> None:
        """A run parked until a signal or a timer."""
