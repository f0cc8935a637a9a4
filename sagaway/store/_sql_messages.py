"""Statements of durable messaging: publishing (also inside a checkpoint's transaction),
groups, claims of deliveries with leases and fencing, dead letters, pruning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagaway.store._sql_core import Cursorish, SqlCore, Statement, marks
from sagaway.store.messages import (
    Claimed,
    DeliveryStatus,
    GroupStats,
    MessageRecord,
    MessageStore,
    NewMessage,
    TopicStats,
)

__all__ = ["FIRST_DUE_SQL", "MessageStatements", "first_due", "insert_messages"]

MESSAGE_COLUMNS = (
    "id, seq, topic, key, payload, dedup_id, published_at, available_at, trace_context"
)
_INSERT_MESSAGE = (
    "INSERT INTO sagaway_messages "
    "(id, topic, key, payload, dedup_id, published_at, available_at, trace_context) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq"
)
# One delivery for every group of the message's topic: the group's queue entry and inbox.
_DELIVER = (
    "INSERT INTO sagaway_deliveries "
    "(grp, message_id, seq, topic, key, status, due_at, updated_at) "
    "SELECT grp, ?, ?, topic, ?, 'ready', ?, ? FROM sagaway_groups WHERE topic = ?"
)
# A later message of a key waits while an earlier one of the same key is unhandled.
_FIFO = (
    "AND (d.key IS NULL OR NOT EXISTS (SELECT 1 FROM sagaway_deliveries e "
    "WHERE e.grp = d.grp AND e.key = d.key AND e.status = 'ready' AND e.seq < d.seq)) "
)


# A message without a delay is due at once for every group: at time 0, not at its publisher's
# clock reading, so that no clock (a host's stepping back, another host's running behind)
# can hold it back. Claims then take such messages in publish order.
FIRST_DUE_SQL = "CASE WHEN available_at > published_at THEN available_at ELSE 0 END"


def first_due(message: NewMessage) -> float:
    """When a new message's deliveries are first due (see FIRST_DUE_SQL)."""
    return message.available_at if message.available_at > message.published_at else 0.0


def insert_messages(cur: Cursorish, messages: Sequence[NewMessage]) -> list[bool]:
    """Inside the caller's write transaction: store `messages` and deliver each to its
    topic's groups; for each, whether it was new (not a duplicate id or dedup id)."""
    stored = []
    for m in messages:
        values = (m.id, m.topic, m.key, m.payload, m.dedup_id, m.published_at, m.available_at)
        row = cur.one(_INSERT_MESSAGE, (*values, m.trace_context))
        if row is not None:
            cur.execute(_DELIVER, (m.id, row[0], m.key, first_due(m), m.published_at, m.topic))
        stored.append(row is not None)
    if any(stored):
        cur.wake()
    return stored


def message_record(row: Sequence[Any]) -> MessageRecord:
    """A `sagaway_messages` row (MESSAGE_COLUMNS) as a record."""
    return MessageRecord(
        row[0], int(row[1]), row[2], row[3], row[4], row[5], float(row[6]), float(row[7]), row[8]
    )


class MessageStatements(SqlCore, MessageStore):
    """The `MessageStore` contract over SQL."""

    # PostgreSQL: registering a group waits for publishes under way, so that a message
    # committed meanwhile is either seen by the backfill or delivered by its publisher.
    _group_lock_sql: str | None = None

    def publish(self, messages: Sequence[NewMessage]) -> list[bool]:
        return self._write(lambda cur: insert_messages(cur, messages))

    def register_group(self, group: str, topic: str, now: float) -> None:
        known = self._read(
            lambda cur: cur.one(
                "SELECT 1 FROM sagaway_groups WHERE grp = ? AND topic = ?", (group, topic)
            )
        )
        if known is not None:
            return

        def work(cur: Cursorish) -> None:
            if self._group_lock_sql is not None:
                cur.execute(self._group_lock_sql)
            new = cur.one(
                "INSERT INTO sagaway_groups (grp, topic, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING grp",
                (group, topic, now),
            )
            if new is None:
                return
            cur.execute(
                "INSERT INTO sagaway_deliveries "
                "(grp, message_id, seq, topic, key, status, due_at, updated_at) "
                f"SELECT ?, id, seq, topic, key, 'ready', {FIRST_DUE_SQL}, ? "
                "FROM sagaway_messages WHERE topic = ? ON CONFLICT DO NOTHING",
                (group, now, topic),
            )
            cur.wake()

        self._write(work)

    def claim_messages(
        self,
        group: str,
        owner: str,
        limit: int,
        now: float,
        lease_until: float,
        ordered: bool,
    ) -> list[Claimed]:
        fifo = _FIFO if ordered else ""

        def work(cur: Cursorish) -> list[Claimed]:
            due = cur.all(
                "SELECT d.message_id FROM sagaway_deliveries d "
                f"WHERE d.grp = ? AND d.due_at <= ? {fifo}"
                f"ORDER BY d.due_at, d.seq LIMIT ? {self.lock_clause}",
                (group, now, limit),
            )
            if not due:
                return []
            ids = [row[0] for row in due]
            leased = cur.all(
                "UPDATE sagaway_deliveries SET owner = ?, epoch = epoch + 1, due_at = ?, "
                "attempts = attempts + 1, updated_at = ? "
                f"WHERE grp = ? AND message_id IN ({marks(ids)}) "
                "RETURNING message_id, epoch, attempts",
                (owner, lease_until, now, group, *ids),
            )
            rows = cur.all(
                f"SELECT {MESSAGE_COLUMNS} FROM sagaway_messages "
                f"WHERE id IN ({marks(ids)}) ORDER BY seq",
                ids,
            )
            lease = {row[0]: (int(row[1]), int(row[2])) for row in leased}
            return [
                Claimed(group, record, *lease[record.id])
                for record in map(message_record, rows)
                if record.id in lease
            ]

        return self._write(work)

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
        def finish(row: Any, cur: Cursorish) -> bool:
            if row is not None and due_at is not None:
                cur.wake()
            return row is not None

        # One statement: PostgreSQL sends a batch of them to the server at once (pipeline).
        return self._write(
            Statement(
                "UPDATE sagaway_deliveries SET status = ?, due_at = ?, owner = NULL, "
                "error = COALESCE(?, error), attempts = attempts - ?, updated_at = ? "
                "WHERE grp = ? AND message_id = ? AND epoch = ? RETURNING 1",
                (status, due_at, error, 0 if count_attempt else 1, now, group, message_id, epoch),
                finish,
            )
        )

    def renew_messages(
        self, group: str, owner: str, message_ids: Sequence[str], lease_until: float
    ) -> int:
        if not message_ids:
            return 0
        ids = list(message_ids)

        def work(cur: Cursorish) -> int:
            rows = cur.all(
                "UPDATE sagaway_deliveries SET due_at = ? WHERE grp = ? AND owner = ? "
                f"AND status = 'ready' AND message_id IN ({marks(ids)}) RETURNING 1",
                (lease_until, group, owner, *ids),
            )
            return len(rows)

        return self._write(work)

    def dead_letters(
        self, group: str | None = None, limit: int = 1000
    ) -> list[tuple[str, MessageRecord, str | None, int, float]]:
        where, params = ("AND d.grp = ? ", [group]) if group is not None else ("", [])
        columns = ", ".join(f"m.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT d.grp, d.error, d.attempts, d.updated_at, {columns} "
                "FROM sagaway_deliveries d JOIN sagaway_messages m ON m.id = d.message_id "
                f"WHERE d.status = 'dead' {where}ORDER BY d.updated_at, d.seq LIMIT ?",
                (*params, limit),
            )
        )
        return [
            (row[0], message_record(row[4:]), row[1], int(row[2]), float(row[3])) for row in rows
        ]

    def redrive_dead_letters(self, group: str, ids: Sequence[str] | None, now: float) -> int:
        chosen = "" if ids is None else f"AND message_id IN ({marks(list(ids))}) "
        if ids is not None and not ids:
            return 0

        def work(cur: Cursorish) -> int:
            rows = cur.all(
                "UPDATE sagaway_deliveries SET status = 'ready', due_at = ?, attempts = 0, "
                f"owner = NULL, updated_at = ? WHERE grp = ? AND status = 'dead' {chosen}"
                "RETURNING 1",
                (now, now, group, *(ids or ())),
            )
            if rows:
                cur.wake()
            return len(rows)

        return self._write(work)

    def topics(self) -> list[TopicStats]:
        def read(cur: Cursorish) -> list[TopicStats]:
            counts = {
                row[0]: (int(row[1]), row[2])
                for row in cur.all(
                    "SELECT topic, COUNT(*), MIN(published_at) FROM sagaway_messages GROUP BY topic"
                )
            }
            groups: dict[str, list[str]] = {}
            for grp, topic in cur.all("SELECT grp, topic FROM sagaway_groups ORDER BY grp"):
                groups.setdefault(topic, []).append(grp)
            return [
                TopicStats(
                    topic,
                    counts.get(topic, (0, None))[0],
                    tuple(groups.get(topic, ())),
                    counts.get(topic, (0, None))[1],
                )
                for topic in sorted(set(counts) | set(groups))
            ]

        return self._read(read)

    def groups(self) -> list[GroupStats]:
        rows = self._read(
            lambda cur: cur.all(
                "SELECT g.grp, g.topic, "
                "SUM(CASE WHEN d.status = 'ready' THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN d.status = 'handled' THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN d.status = 'dead' THEN 1 ELSE 0 END), "
                "MIN(CASE WHEN d.status = 'ready' THEN m.published_at END) "
                "FROM sagaway_groups g "
                "LEFT JOIN sagaway_deliveries d ON d.grp = g.grp AND d.topic = g.topic "
                "LEFT JOIN sagaway_messages m ON m.id = d.message_id "
                "GROUP BY g.grp, g.topic ORDER BY g.grp, g.topic"
            )
        )
        return [
            GroupStats(row[0], row[1], int(row[2] or 0), int(row[3] or 0), int(row[4] or 0), row[5])
            for row in rows
        ]

    def prune_messages(self, handled_before: float) -> int:
        def work(cur: Cursorish) -> int:
            cur.execute(
                "DELETE FROM sagaway_deliveries WHERE status = 'handled' AND updated_at < ?",
                (handled_before,),
            )
            gone = cur.all(
                "DELETE FROM sagaway_messages WHERE published_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM sagaway_deliveries d WHERE d.message_id = sagaway_messages.id) "
                "RETURNING 1",
                (handled_before,),
            )
            return len(gone)

        return self._write(work)
