"""Crash points: the places where an execution can die with a different outcome for the user's
effects, offered to a probe (`sagaway.testing.explore`) that may stop the execution there as
if its process had been killed.

The places: just after each write of an execution committed, and just after each try of a
step or compensation body returned or raised (its effect may have happened; its record is
not written yet). A probe stops the execution by raising `Abandon(False)`: the execution ends
without another write, as after a lost lease, and its run waits for its lease to expire.

Unused (`probe` None), each place costs one module attribute read.
"""

from __future__ import annotations

from typing import Protocol

from sagaway.store.base import Checkpoint

__all__ = ["CrashProbe", "probe"]


class CrashProbe(Protocol):
    """What is told of each crash point an execution passes."""

    def after_write(self, saga: str, checkpoint: Checkpoint) -> None:
        """`checkpoint`, of a run of saga `saga`, was committed."""

    def after_try(self, saga: str, step: str, attempt: int, compensating: bool, ok: bool) -> None:
        """Try `attempt` of step `step` (or of its compensation) in a run of saga `saga`
        returned (`ok`) or raised; nothing of it is recorded yet."""


probe: CrashProbe | None = None
