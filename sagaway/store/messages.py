"""The store's contract for durable messaging: messages published to topics (the outbox),
the consumer groups of each topic, and one delivery per (group, message) that is at once
the group's queue entry, its inbox record and, when retries are spent, its dead letter."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Claimed",
    "DeliveryStatus",
    "GroupStats",
    "MessageRecord",
    "MessageStore",
    "NewMessage",
    "TopicStats",
]


class DeliveryStatus(StrEnum):
    """A message's state in one group: `ready` (waiting, retrying or held by a consumer),
    `handled` (recorded in the inbox: never handed to the group again) or `dead`."""

    READY = "ready"
    HANDLED = "handled"
    DEAD = "dead"


@dataclass(frozen=True)
class NewMessage:
    """A message to publish. `available_at` is when consumers may first see it (its delay)."""

    id: str
    topic: str
    key: str | None
    payload: str
    dedup_id: str | None
    published_at: float
    available_at: float
    trace_context: str | None = None  # the publisher's W3C trace context (JSON), if traced


@dataclass(frozen=True)
class MessageRecord:
    """A stored message."""

    id: str
    seq: int
    topic: str
    key: str | None
    payload: str
    dedup_id: str | None
    published_at: float
    available_at: float
    trace_context: str | None = None


@dataclass(frozen=True)
class Claimed:
    """A message leased to one consumer of `group`: `epoch` fences its acknowledgement;
    `attempt` counts this delivery's tries, this one included."""

    group: str
    message: MessageRecord
    epoch: int
    attempt: int


@dataclass(frozen=True)
class TopicStats:
    """A topic's retained messages and its groups."""

    topic: str
    messages: int
    groups: tuple[str, ...]
    oldest: float | None


@dataclass(frozen=True)
class GroupStats:
    """A group's deliveries: waiting (`ready`), `handled` and `dead`, and the publish time of
    its oldest unhandled message (its lag)."""

    group: str
    topic: str
    ready: int
    handled: int
    dead: int
    oldest_ready: float | None


class MessageStore(ABC):
    """Topics, consumer groups, deliveries and dead letters."""

    @abstractmethod
    def publish(self, messages: Sequence[NewMessage]) -> list[bool]:
        """Store messages and hand each to every group of its topic, in one transaction;
        for each, False when it was not stored (its id or (topic, dedup_id) was already)."""

    @abstractmethod
    def publish_in(self, connection: object, messages: Sequence[NewMessage]) -> None:
        """Store messages inside the caller's own open transaction on `connection` (a
        driver connection to this same database): they commit, or roll back, with it."""

    @abstractmethod
    def register_group(self, group: str, topic: str, now: float) -> None:
        """Make `group` a consumer group of `topic`: it gets every retained message of the
        topic, those published before included. Idempotent."""

    @abstractmethod
    def claim_messages(
        self,
        group: str,
        owner: str,
        limit: int,
        now: float,
        lease_until: float,
        ordered: bool,
    ) -> list[Claimed]:
        """Lease up to `limit` due messages of `group` to `owner`, oldest first. With
        `ordered`, a message is due only when no earlier message of its key is still
        unhandled in the group (waiting for a retry, its delay, or held by a consumer)."""

    @abstractmethod
    def settle_message(
        self,
        group: str,
        message_id: str,
        epoch: int,
        now: float,
        status: DeliveryStatus,
        due_at: float | None = None,
        error: str | None = None,
        count_attempt: bool = True,
    ) -> bool:
        """End one try: `handled`, `dead`, or `ready` again at `due_at` (a retry, a park).
        Fenced: False (nothing written) when the lease was taken over since."""

    @abstractmethod
    def renew_messages(
        self, group: str, owner: str, message_ids: Sequence[str], lease_until: float
    ) -> int:
        """Extend `owner`'s leases on the messages it is handling; return how many."""

    @abstractmethod
    def dead_letters(
        self, group: str | None = None, limit: int = 1000
    ) -> list[tuple[str, MessageRecord, str | None, int, float]]:
        """Dead letters, oldest first: (group, message, error, attempts, failed_at)."""

    @abstractmethod
    def redrive_dead_letters(self, group: str, ids: Sequence[str] | None, now: float) -> int:
        """Make dead letters of `group` (all, or those with these message ids) ready again
        with fresh attempts; return how many."""

    @abstractmethod
    def topics(self) -> list[TopicStats]:
        """Every topic with retained messages or groups."""

    @abstractmethod
    def groups(self) -> list[GroupStats]:
        """Every consumer group, with its counts."""

    @abstractmethod
    def prune_messages(self, handled_before: float) -> int:
        """Delete deliveries handled before `handled_before`, then the messages that every
        group has handled (or that no group reads) and that were published before it;
        dead letters stay. Return how many messages went."""
