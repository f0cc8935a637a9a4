"""Statements of the workers: claiming due runs, fenced checkpoints, heartbeats, and the
owners whose runs are taken over."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sagaway.store._sql_core import (
    ACTIVE_SQL,
    EVENT_INSERT,
    JOURNAL_UPSERT,
    RUN_COLUMNS,
    Cursorish,
    lease_lost,
    makes_due,
    marks,
    run_record,
)
from sagaway.store._sql_flow import FlowStatements, release_slot
from sagaway.store._sql_messages import insert_messages
from sagaway.store.base import (
    KEEP,
    Checkpoint,
    Claim,
    RunRecord,
    RunUpdate,
)

__all__ = ["ClaimStatements"]

# A claim that queued runs of full keys looks again, at most this many times, examining at
# least _QUEUE_BATCH due runs each time.
_MORE_ROUNDS = 8
_QUEUE_BATCH = 64


class ClaimStatements(FlowStatements):
    """Claims, checkpoints and leases."""

    # --- workers -------------------------------------------------------------------------
    def claim(
        self, owner: str, limit: int, now: float, lease_until: float, takeover: bool = True
    ) -> list[Claim]:
        unowned = "" if takeover else "AND owner IS NULL "
        locked: set[tuple[str, str]] = set()  # the keys this claim's transaction holds

        def take(
            cur: Cursorish, wanted: int, scan: int
        ) -> tuple[list[tuple[RunRecord, str | None]], int]:
            """One round over `scan` due runs: up to `wanted` claimed, and how many of them
            went to their key's queue (one given a slot and not claimed stays due)."""
            due = cur.all(
                "SELECT id, owner, saga, flow_key, flow_limit, flow_held, cancel_requested "
                f"FROM sagaway_runs WHERE due_at <= ? {unowned}"
                f"ORDER BY due_at LIMIT ? {self.lock_clause}",
                (now, scan),
            )
            # Runs of sagas with a limit that hold no slot must take one (a cancelled run
            # unwinds at once); those that find their key full wait in its queue instead.
            gated = [r[:1] + r[2:5] for r in due if r[4] is not None and not (r[5] or r[6])]
            refused, skipped = self._admit(cur, now, gated, locked) if gated else (set(), set())
            taken = [row for row in due if row[0] not in refused and row[0] not in skipped]
            taken = taken[:wanted]
            previous = {row[0]: row[1] for row in taken}
            if not previous:
                return [], len(refused)
            ids = list(previous)
            # A cancelled run takes a slot without waiting for one (admitted runs have theirs,
            # a takeover holds its own already).
            limited = [row[0] for row in taken if row[4] is not None and row[6] and not row[5]]
            if limited:
                cur.execute(
                    "UPDATE sagaway_runs SET flow_held = 1, flow_queued_at = NULL "
                    f"WHERE id IN ({marks(limited)})",
                    limited,
                )
            rows = cur.all(
                "UPDATE sagaway_runs SET owner = ?, epoch = epoch + 1, due_at = ?, "
                "wake_pending = 0, updated_at = ?, "
                "status = CASE WHEN status IN ('pending', 'waiting') "
                "THEN 'running' ELSE status END, recoveries = recoveries + "
                "CASE WHEN owner IS NULL THEN 0 ELSE 1 END "
                f"WHERE id IN ({marks(ids)}) RETURNING {RUN_COLUMNS}",
                (owner, lease_until, now, *ids),
            )
            cur.many(
                EVENT_INSERT,
                [
                    (run_id, now, "recovered", json.dumps({"from": prior, "to": owner}))
                    for run_id, prior in previous.items()
                    if prior is not None
                ],
            )
            return [(run_record(row), previous[row[0]]) for row in rows], len(refused)

        def work(cur: Cursorish) -> list[tuple[RunRecord, str | None]]:
            locked.clear()  # a batch run again after an error starts a new transaction
            claimed, queued = take(cur, limit, limit)
            # Runs that went to their key's queue left room: look further (a bounded number
            # of rounds, so that one transaction stays short), so that a backlog of one full
            # key never holds up the due runs behind it.
            for _ in range(_MORE_ROUNDS):
                if not queued or len(claimed) >= limit:
                    break
                wanted = limit - len(claimed)
                more, queued = take(cur, wanted, max(wanted, _QUEUE_BATCH))
                claimed += more
            return claimed

        claimed = self._write(work)
        if not claimed:
            return []
        journals = self.journals([run.id for run, _ in claimed])
        return [Claim(run, journals[run.id], prior) for run, prior in claimed]

    def _run_update(self, cp: Checkpoint, update: RunUpdate) -> tuple[str, list[Any]]:
        sets: list[str] = ["updated_at = ?"]
        params: list[Any] = [cp.now]
        for column in ("status", "owner", "result", "error"):
            value = getattr(update, column)
            if value is not KEEP:
                sets.append(f"{column} = ?")
                params.append(value)
        if update.wait is not KEEP:
            name, position, deadline = update.wait or (None, None, None)
            sets.append("wait_name = ?, wait_position = ?, wait_deadline = ?")
            params += [name, position, deadline]
        if update.pivot_passed:
            sets.append("pivot_passed = 1")
        if update.clear_cancel:
            sets.append("cancel_requested = 0")
        if cp.release_slot:
            sets.append("flow_held = 0")
        due = update.due_at
        if due is KEEP and cp.lease_until is not None:
            due = cp.lease_until
        if due is not KEEP:
            if update.rest:
                # Read from the run's own row: a signal or cancel that commits while this
                # statement waits for the row is seen (a subquery's snapshot would not be).
                sets.append(
                    "due_at = CASE WHEN wake_pending = 1 OR cancel_requested = 1 THEN ? ELSE ? END"
                )
                params += [cp.now, due]
            else:
                sets.append("due_at = ?")
                params.append(due)
        params += [cp.run_id, cp.epoch]
        return (
            f"UPDATE sagaway_runs SET {', '.join(sets)} WHERE id = ? AND epoch = ? "
            "RETURNING epoch, cancel_requested",
            params,
        )

    def checkpoint(self, cp: Checkpoint) -> bool:
        params: list[Any]
        if cp.update is None:
            # Most checkpoints only add journal lines: read the fence, write one page.
            fence, params = self._fence_sql, [cp.run_id]
        else:
            fence, params = self._run_update(cp, cp.update)
        run_id, epoch = cp.run_id, cp.epoch
        wakes = makes_due(cp.update)
        entries = [(run_id, *entry) for entry in cp.entries]
        consumed = [(position, signal_id) for signal_id, position in cp.consumed]
        events = [(e.run_id, e.at, e.kind, e.data) for e in cp.events]

        def work(cur: Cursorish) -> bool:
            row = cur.one(fence, params)
            if row is None or row[0] != epoch:
                raise lease_lost(run_id, epoch)
            if len(entries) == 1:
                cur.execute(JOURNAL_UPSERT, entries[0])
            else:
                cur.many(JOURNAL_UPSERT, entries)
            if cp.release_slot:
                release_slot(cur, run_id, cp.now)
            if cp.messages:
                insert_messages(cur, cp.messages)
            if consumed:
                cur.many("UPDATE sagaway_signals SET consumed_at = ? WHERE id = ?", consumed)
            if events:
                cur.many(
                    EVENT_INSERT,
                    events,
                )
            if wakes:
                cur.wake()
            return bool(row[1])

        return self._write(work)

    def heartbeat(self, owner: str, run_ids: Sequence[str], lease_until: float) -> int:
        if not run_ids:
            return 0
        ids = list(run_ids)
        return self._write(
            lambda cur: (
                cur.execute(
                    "UPDATE sagaway_runs SET due_at = ? WHERE owner = ? "
                    f"AND id IN ({marks(ids)}) AND status IN {ACTIVE_SQL}",
                    (lease_until, owner, *ids),
                ).rowcount
            )
        )

    def owners(self) -> list[str]:
        rows = self._read(
            lambda cur: cur.all(
                "SELECT DISTINCT owner FROM sagaway_runs "
                f"WHERE owner IS NOT NULL AND status IN {ACTIVE_SQL}"
            )
        )
        return [row[0] for row in rows]

    def expire_owner(self, owner: str, now: float) -> int:
        def work(cur: Cursorish) -> int:
            count = cur.execute(
                "UPDATE sagaway_runs SET due_at = ? "
                f"WHERE owner = ? AND status IN {ACTIVE_SQL} AND due_at > ?",
                (now, owner, now),
            ).rowcount
            if count:
                cur.wake()
            return count

        return self._write(work)

    def queue_stats(self, now: float) -> tuple[int, float | None]:
        row = self._read(
            lambda cur: cur.only(
                "SELECT COUNT(*), MIN(due_at) FROM sagaway_runs WHERE due_at <= ?", (now,)
            )
        )
        return int(row[0]), None if row[1] is None else float(row[1])

    def next_due(self) -> float | None:
        row = self._read(
            lambda cur: cur.one("SELECT MIN(due_at) FROM sagaway_runs WHERE due_at IS NOT NULL")
        )
        return None if row is None or row[0] is None else float(row[0])
