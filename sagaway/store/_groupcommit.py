"""Group commit: many threads' writes in one transaction, each released after the commit.

Leader/follower, with no thread of its own: the first writer to arrive becomes the leader,
takes every write queued so far, runs them in one transaction and wakes their callers;
writes that arrive meanwhile queue up and go out together in the next transaction, led by
the first of them. A lone writer pays one commit and no thread hand-off; sixteen concurrent
writers share one fsync.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

__all__ = ["GroupCommit"]

C = TypeVar("C")
R = TypeVar("R")
# Batched together, works return values of different types: a batch holds them as Any.
Work = Callable[[Any], Any]


class _Item:
    __slots__ = ("error", "gate", "lead", "value", "work")

    def __init__(self, work: Work) -> None:
        self.work = work
        # A lock taken at birth and released by the leader: the cheapest wake-up there is.
        self.gate = threading.Lock()
        self.gate.acquire()
        self.lead = False
        self.value: Any = None
        self.error: BaseException | None = None


class GroupCommit(Generic[C]):
    """Serialises writes through `run_batch`, batching those that arrive concurrently.

    `run_batch(works)` must run every work function inside one transaction and return, for
    each, `(True, value)` or `(False, exception)`; if the transaction itself fails it raises,
    and every caller in the batch gets that exception.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Callable[[C], Any]]], list[tuple[bool, Any]]],
        max_batch: int = 512,
        closed: Callable[[], BaseException] = lambda: RuntimeError("closed"),
    ) -> None:
        self._run_batch = run_batch
        self._closed_error = closed
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Item] = []
        self._busy = False
        self._closed = False
        self._idle = threading.Condition(self._lock)
        self.batches = 0
        self.writes = 0

    def submit(self, work: Callable[[C], R]) -> R:
        """Run `work(connection)` in the next transaction; return its value once committed."""
        item = _Item(work)
        with self._lock:
            if self._closed:
                raise self._closed_error()
            self._queue.append(item)
            lead = not self._busy
            self._busy = True
        if lead:
            self._lead()
        else:
            try:
                item.gate.acquire()  # released when our write committed, or when we must lead
            except BaseException:  # interrupted (Ctrl-C): never leave the queue leaderless
                with self._lock:
                    withdrawn = not item.lead and item in self._queue
                    if withdrawn:
                        self._queue.remove(item)
                if not withdrawn:
                    if item.lead:
                        self._lead()
                    else:
                        item.gate.acquire()  # our write is being committed: let it finish
                raise
            if item.lead:
                self._lead()
        if item.error is not None:
            raise item.error
        # The leader stored what `work` returned, through a batch that holds values as Any.
        return cast(R, item.value)

    def _lead(self) -> None:
        with self._lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        try:
            outcomes = self._run_batch([item.work for item in batch])
        except BaseException as exc:  # the whole transaction failed: everyone hears of it
            outcomes = [(False, exc)] * len(batch)
        self.batches += 1
        self.writes += len(batch)
        with self._lock:
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._busy = False
                if self._closed:
                    self._idle.notify_all()
            else:
                successor.lead = True
        for item, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                item.value = value
            else:
                item.error = value
            if not item.lead:
                item.gate.release()
        if successor is not None:
            successor.gate.release()

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new writes and wait (up to `timeout` s) for the ones under way."""
        with self._lock:
            self._closed = True
            self._idle.wait_for(lambda: not self._busy, timeout)
