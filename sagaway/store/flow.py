"""The store's contract for flow control: per-key concurrency limits and priorities of runs.

A run of a saga declared with `concurrency=` carries a `FlowControl`: its key, the limit of
runs of that (saga, key) that may hold a slot at once, and its priority, all fixed when it
started. A run holds a slot from its claim until it rests (a durable wait, a timer, a park)
or ends; a handed-back run keeps it. A claim that finds the key full moves the run to the
key's queue instead (`queued_at` set, not due); a run that gives its slot back makes the
queue's first run (highest priority, then oldest) due again, and the claim decides once more.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["FlowControl", "FlowQueue", "FlowStore"]


@dataclass(frozen=True)
class FlowControl:
    """A run's flow control: at most `limit` runs of its saga with the same `key` hold a slot
    at once; waiting runs with a higher `priority` take a freed slot first. `held` and
    `queued_at` say where the run stands (set by the store, not by `start`)."""

    key: str
    limit: int
    priority: int = 0
    held: bool = False
    queued_at: float | None = None  # when it joined its key's queue, None when not queued

    def to_doc(self) -> dict[str, Any]:
        """The JSON form the command line and the HTTP API show."""
        return {
            "key": self.key,
            "limit": self.limit,
            "priority": self.priority,
            "holds_slot": self.held,
            "queued_at": self.queued_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> FlowControl:
        """Back from `to_doc`'s form."""
        return cls(doc["key"], doc["limit"], doc["priority"], doc["holds_slot"], doc["queued_at"])

    def describe(self, held: int | None = None) -> str:
        """One line for a run list: its key and priority, and whether it waits for a slot
        (`held`: how many runs of its key hold one, when known)."""
        text = f"key {self.key or '(all)'}, limit {self.limit}"
        if self.priority:
            text += f", priority {self.priority}"
        if self.queued_at is not None:
            text += (
                f": waits for a slot ({held}/{self.limit} held)"
                if held is not None
                else ": waits for a slot"
            )
        return text


class FlowQueue(NamedTuple):
    """The runs of one (saga, key) waiting for a slot, and how many hold one."""

    saga: str
    key: str
    queued: int
    held: int
    limit: int


class FlowStore(ABC):
    """Keys' queues: read for gauges and run lists, and swept for lost wake-ups."""

    @abstractmethod
    def flow_queues(self, saga: str | None = None) -> list[FlowQueue]:
        """Every (saga, key) with runs waiting for a slot, by saga and key (only those of
        `saga` when given). `limit` is the greatest limit among the waiting runs."""

    @abstractmethod
    def flow_sweep(self, now: float) -> int:
        """Make the first queued run of each key that has a free slot due now (a wake-up
        lost between two processes' transactions is found here); return how many."""
