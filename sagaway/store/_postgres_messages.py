"""PostgreSQL's messaging statements, each write one statement: publishing (alone or inside a
step's checkpoint) and claiming use data-modifying WITH clauses. A lone statement costs one
round trip, and a batch of them is sent to the server at once (pipeline mode), where the
shared SQL's several statements per write would cost a round trip each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagaway.store._sql_core import Cursorish, SqlCore, Statement
from sagaway.store._sql_messages import _FIFO as FIFO
from sagaway.store.messages import Claimed, MessageRecord, NewMessage

__all__ = ["PostgresMessages", "publish_clauses"]

_MESSAGE_ROW = (
    "(?::bigint, ?::text, ?::text, ?::text, ?::text, ?::text, ?::float8, ?::float8, ?::text)"
)


def publish_clauses(messages: Sequence[NewMessage], guard: str = "") -> tuple[str, list[Any]]:
    """WITH clauses storing `messages` in order (`published`), only where `guard` holds, and
    handing each to its topic's groups (`delivered`); with their parameters."""
    rows = ", ".join([_MESSAGE_ROW] * len(messages))
    sql = (
        "published AS (INSERT INTO sagaway_messages "
        "(id, topic, key, payload, dedup_id, published_at, available_at, trace_context) "
        "SELECT v.id, v.topic, v.key, v.payload, v.dedup_id, v.published_at, v.available_at, "
        f"v.trace_context FROM (VALUES {rows}) AS v(n, id, topic, key, payload, dedup_id, "
        f"published_at, available_at, trace_context) {guard} ORDER BY v.n "
        "ON CONFLICT DO NOTHING RETURNING id, seq, topic, key, published_at, available_at), "
        "delivered AS (INSERT INTO sagaway_deliveries "
        "(grp, message_id, seq, topic, key, status, due_at, updated_at) "
        "SELECT g.grp, p.id, p.seq, p.topic, p.key, 'ready', "
        "CASE WHEN p.available_at > p.published_at THEN p.available_at ELSE 0 END, "
        "p.published_at "
        "FROM published p JOIN sagaway_groups g ON g.topic = p.topic RETURNING 1) "
    )
    params: list[Any] = []
    for n, m in enumerate(messages):
        params += [n, m.id, m.topic, m.key, m.payload, m.dedup_id, m.published_at, m.available_at]
        params.append(m.trace_context)
    return sql, params


class PostgresMessages(SqlCore):
    """`publish` and `claim_messages` as one statement each."""

    # The LISTEN/NOTIFY channel: a publish that delivered to a group notifies from inside
    # its statement, so the consumers hear of it at its commit, without a round trip after.
    wake_channel = "sagaway"

    def notify_if_delivered(self) -> tuple[str, list[Any]]:
        """A select-list item sending the wake-up when `delivered` has rows."""
        return "CASE WHEN EXISTS (SELECT 1 FROM delivered) THEN pg_notify(?, '') END", [
            self.wake_channel
        ]

    def publish(self, messages: Sequence[NewMessage]) -> list[bool]:
        if not messages:
            return []
        publish, params = publish_clauses(messages)
        notify, channel = self.notify_if_delivered()
        sql = f"WITH {publish}SELECT ARRAY(SELECT id FROM published), {notify}"
        params += channel

        def finish(row: Any, cur: Cursorish) -> list[bool]:
            stored = set(row[0]) if row is not None else set()
            return [m.id in stored for m in messages]

        # Sent again after a lost connection, it stores nothing twice: the ids are fixed.
        return self._write(Statement(sql, params, finish, idempotent=True))

    def claim_messages(
        self,
        group: str,
        owner: str,
        limit: int,
        now: float,
        lease_until: float,
        ordered: bool,
    ) -> list[Claimed]:
        fifo = FIFO if ordered else ""
        sql = (
            "WITH due AS (SELECT d.message_id FROM sagaway_deliveries d "
            f"WHERE d.grp = ? AND d.due_at <= ? {fifo}"
            f"ORDER BY d.due_at, d.seq LIMIT ? {self.lock_clause}), "
            "leased AS (UPDATE sagaway_deliveries l SET owner = ?, epoch = l.epoch + 1, "
            "due_at = ?, attempts = l.attempts + 1, updated_at = ? FROM due "
            "WHERE l.grp = ? AND l.message_id = due.message_id "
            "RETURNING l.message_id, l.epoch, l.attempts) "
            "SELECT COALESCE(json_agg(json_build_array(m.id, m.seq, m.topic, m.key, m.payload, "
            "m.dedup_id, m.published_at, m.available_at, leased.epoch, leased.attempts, "
            "m.trace_context) "
            "ORDER BY m.seq), '[]') FROM leased JOIN sagaway_messages m ON m.id = leased.message_id"
        )
        params = (group, now, limit, owner, lease_until, now, group)

        def finish(row: Any, cur: Cursorish) -> list[Claimed]:
            claimed = []
            for (
                id_, seq, topic, key, payload, dedup, published, available, epoch, attempt,
                trace,
            ) in row[0] if row is not None else []:  # fmt: skip
                record = MessageRecord(
                    id_, seq, topic, key, payload, dedup, float(published), float(available), trace
                )
                claimed.append(Claimed(group, record, epoch, attempt))
            return claimed

        return self._write(Statement(sql, params, finish))
