"""Flow control over SQL: which due runs a claim may take under their keys' limits, the
queue of each (saga, key), and giving a slot back (the `FlowStore` contract).

Only runs of sagas declared with a limit (`flow_limit` set) ever reach this code: a claim
whose due runs have none runs the statements it ran before, reading a few more columns.

Atomicity: a claim decides for a key under a lock of that key held until its commit
(SQLite: the database's write lock, which every write transaction takes; PostgreSQL: a
transaction-scoped advisory lock per (saga, key), waited for in key order in a claim's
first round and only tried in its later ones, so claimers never deadlock), and counts the
key's slots with a statement that sees every claim committed before it. Giving a slot back
takes no key lock: it makes the queue's first run due, and the claim that takes it decides
again. A release that commits while a claim is queueing a run may find no queued run to
wake; `flow_sweep` (each worker, every second) finds such keys.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

from sagaway.store._sql_core import Cursorish, Row, SqlCore, marks
from sagaway.store.flow import FlowQueue

__all__ = ["FlowStatements", "flow_lock_id", "release_slot"]

# The first queued run of a key: highest priority, then longest queued (the queue's index).
_QUEUE_ORDER = "ORDER BY q.priority DESC, q.flow_queued_at, q.id"
# How many runs of a (saga, key) hold a slot.
_HELD = "SELECT COUNT(*) FROM sagaway_runs WHERE saga = ? AND flow_key = ? AND flow_held = 1"
# Make the first not-yet-woken queued run of the key of run ? due at ?.
_NUDGE = (
    "UPDATE sagaway_runs SET due_at = ? WHERE id = (SELECT q.id FROM sagaway_runs q "
    "JOIN sagaway_runs r ON q.saga = r.saga AND q.flow_key = r.flow_key WHERE r.id = ? "
    f"AND q.flow_queued_at IS NOT NULL AND q.due_at IS NULL {_QUEUE_ORDER} LIMIT 1)"
)


def flow_lock_id(saga: str, key: str) -> int:
    """The 64-bit advisory lock id of a (saga, key)."""
    digest = hashlib.blake2b(f"{saga}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def release_slot(cur: Cursorish, run_id: str, now: float) -> None:
    """The run `run_id` gave its slot back (its row says so already): make the first run of
    its key's queue due, so that a claim decides for it."""
    if cur.execute(_NUDGE, (now, run_id)).rowcount:
        cur.wake()


class FlowStatements(SqlCore):
    """Admission of due runs to their keys' slots, releases, the queues and the sweep."""

    # Lock one (saga, key) until the transaction ends, waiting or trying (PostgreSQL: an
    # advisory lock); None where write transactions exclude each other already (SQLite).
    flow_locks: tuple[str, str] | None = None

    def _admit(
        self, cur: Cursorish, now: float, gated: Sequence[Row], locked: set[tuple[str, str]]
    ) -> tuple[set[str], set[str]]:
        """Inside a claim: `gated` are due runs (id, saga, flow_key, flow_limit) that hold no
        slot. Each joins its key's queue; then the queue's first runs take the key's free
        slots. Queued runs that are not this claim's get their slot and are made due.

        Returns the ids among `gated` that did not get a slot (they stay queued, not due),
        and those left alone: the claim's later rounds only try the lock of a key not in
        `locked` (keys are locked in order within a round, not across rounds: waiting could
        deadlock), and a key another claim holds is left to it."""
        by_key: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for row in gated:
            by_key[(row[1], row[2])].append(row)
        refused: set[str] = set()
        skipped: set[str] = set()
        wait = not locked
        for (saga, key), rows in sorted(by_key.items()):
            ids = [row[0] for row in rows]
            if self.flow_locks and (saga, key) not in locked:
                if wait:
                    cur.execute(self.flow_locks[0], (flow_lock_id(saga, key),))
                elif not cur.only(self.flow_locks[1], (flow_lock_id(saga, key),))[0]:
                    skipped.update(ids)
                    continue
                locked.add((saga, key))
            cur.execute(
                "UPDATE sagaway_runs SET flow_queued_at = COALESCE(flow_queued_at, due_at), "
                f"due_at = NULL WHERE id IN ({marks(ids)})",
                ids,
            )
            held = int(cur.only(_HELD, (saga, key))[0])
            room = max(row[3] for row in rows) - held
            heads: list[Row] = []
            if room > 0:
                # Rows another claimer holds are skipped: it decides for them after us.
                heads = cur.all(
                    "SELECT q.id, q.flow_limit FROM sagaway_runs q WHERE q.saga = ? AND "
                    f"q.flow_key = ? AND q.flow_queued_at IS NOT NULL {_QUEUE_ORDER} "
                    f"LIMIT ? {self.lock_clause}",
                    (saga, key, room),
                )
            admitted = []
            for run_id, limit in heads:
                if held < limit:
                    admitted.append(run_id)
                    held += 1
            if admitted:
                cur.execute(
                    "UPDATE sagaway_runs SET flow_held = 1, flow_queued_at = NULL, due_at = ? "
                    f"WHERE id IN ({marks(admitted)})",
                    (now, *admitted),
                )
                if set(admitted) - set(ids):
                    cur.wake()
            refused.update(set(ids) - set(admitted))
        return refused, skipped

    # --- the queues ----------------------------------------------------------------------
    def _queues(self, cur: Cursorish, saga: str | None) -> list[tuple[FlowQueue, int]]:
        where, params = ("AND saga = ? ", (saga,)) if saga is not None else ("", ())
        rows = cur.all(
            "SELECT saga, flow_key, COUNT(*), MAX(flow_limit), "
            "SUM(CASE WHEN due_at IS NULL THEN 0 ELSE 1 END) FROM sagaway_runs "
            f"WHERE flow_queued_at IS NOT NULL {where}GROUP BY saga, flow_key",
            params,
        )
        if not rows:
            return []
        held = {
            (row[0], row[1]): int(row[2])
            for row in cur.all(
                "SELECT saga, flow_key, COUNT(*) FROM sagaway_runs WHERE flow_held = 1 "
                f"{where}GROUP BY saga, flow_key",
                params,
            )
        }
        found = [
            (FlowQueue(s, k, int(n), held.get((s, k), 0), int(limit)), int(woken or 0))
            for s, k, n, limit, woken in rows
        ]
        return sorted(found)

    def flow_queues(self, saga: str | None = None) -> list[FlowQueue]:
        return [queue for queue, _ in self._read(lambda cur: self._queues(cur, saga))]

    def flow_sweep(self, now: float) -> int:
        stuck = [
            queue
            for queue, woken in self._read(lambda cur: self._queues(cur, None))
            if not woken and queue.held < queue.limit
        ]
        if not stuck:
            return 0

        def work(cur: Cursorish) -> int:
            count = 0
            for queue in stuck:
                count += cur.execute(
                    "UPDATE sagaway_runs SET due_at = ? WHERE id = (SELECT q.id FROM "
                    "sagaway_runs q WHERE q.saga = ? AND q.flow_key = ? AND "
                    f"q.flow_queued_at IS NOT NULL AND q.due_at IS NULL {_QUEUE_ORDER} "
                    "LIMIT 1)",
                    (now, queue.saga, queue.key),
                ).rowcount
            if count:
                cur.wake()
            return count

        return self._write(work)
