"""Completions: how a caller of `Run.result()` in this process learns that a run executed
here ended, without polling the store."""

from __future__ import annotations

import threading

from sagaway.store.base import Claim, RunStatus

__all__ = ["Completion", "Completions"]

Outcome = tuple[RunStatus, str | None, str | None]


class Completion(threading.Event):
    """A run dispatched to this process's worker: `take()` hands its execution to exactly
    one thread; set when the execution stops, with `outcome` (status, result, error) when
    the run ended, None when it rests or was handed over."""

    def __init__(self, claim: Claim) -> None:
        super().__init__()
        self.claim = claim
        self.outcome: Outcome | None = None
        self._taken = threading.Lock()

    def take(self) -> bool:
        """True for the first caller only."""
        return self._taken.acquire(blocking=False)


class Completions:
    """The runs this process is executing, by id."""

    def __init__(self) -> None:
        self._running: dict[str, Completion] = {}
        self._lock = threading.Lock()

    def executing(self, claim: Claim) -> Completion:
        """Register a run this process's worker is about to execute."""
        completion = Completion(claim)
        with self._lock:
            self._running[claim.run.id] = completion
        return completion

    def executed(self, completion: Completion, outcome: Outcome | None) -> None:
        """The execution stopped (with `outcome` if the run ended): wake the waiters."""
        run_id = completion.claim.run.id
        with self._lock:
            if self._running.get(run_id) is completion:
                del self._running[run_id]
        completion.outcome = outcome
        completion.set()

    def get(self, run_id: str) -> Completion | None:
        """The completion of the run if this process is executing it now."""
        return self._running.get(run_id)
