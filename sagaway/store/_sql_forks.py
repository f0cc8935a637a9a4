"""The `ForkStore` contract over SQL."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sagaway.store._sql_core import (
    EVENT_INSERT,
    FLOW_COLUMNS,
    JOURNAL_UPSERT,
    RUN_COLUMNS,
    Cursorish,
    SqlCore,
    flow_values,
    run_record,
)
from sagaway.store.base import JournalEntry, NewRun, RunRecord, RunStatus
from sagaway.store.forks import ForkLink

__all__ = ["ForkStatements"]


class ForkStatements(SqlCore):
    """Forks of runs and their links."""

    def create_fork(
        self,
        new: NewRun,
        origin_id: str,
        from_step: int,
        entries: Sequence[JournalEntry],
        pivot_passed: bool = False,
    ) -> tuple[RunRecord, bool]:
        def work(cur: Cursorish) -> tuple[RunRecord, bool]:
            row = cur.one(
                "INSERT INTO sagaway_runs (id, saga, idem_key, input, input_hash, status, "
                f"created_at, updated_at, due_at, pivot_passed, {FLOW_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (saga, idem_key) WHERE idem_key IS NOT NULL DO NOTHING "
                f"RETURNING {RUN_COLUMNS}",
                (
                    new.id, new.saga, new.key, new.input, new.input_hash, RunStatus.PENDING,
                    new.now, new.now, new.now, int(pivot_passed), *flow_values(new),
                ),
            )  # fmt: skip
            if row is None:  # the key is taken: that run is the fork asked for before
                existing = cur.only(
                    f"SELECT {RUN_COLUMNS} FROM sagaway_runs WHERE saga = ? AND idem_key = ?",
                    (new.saga, new.key),
                )
                return run_record(existing), False
            cur.many(JOURNAL_UPSERT, [(new.id, *entry) for entry in entries])
            cur.execute(
                "INSERT INTO sagaway_forks (run_id, origin_id, from_step) VALUES (?, ?, ?)",
                (new.id, origin_id, from_step),
            )
            link = {"origin": origin_id, "from_step": from_step}
            cur.execute(EVENT_INSERT, (new.id, new.now, "forked", json.dumps(link)))
            fork = {"fork": new.id, "from_step": from_step}
            cur.execute(EVENT_INSERT, (origin_id, new.now, "fork_created", json.dumps(fork)))
            cur.wake()
            return run_record(row), True

        return self._write(work)

    def fork_origin(self, run_id: str) -> ForkLink | None:
        row = self._read(
            lambda cur: cur.one(
                "SELECT run_id, origin_id, from_step FROM sagaway_forks WHERE run_id = ?",
                (run_id,),
            )
        )
        return None if row is None else ForkLink(row[0], row[1], int(row[2]))

    def forks_of(self, run_id: str) -> list[ForkLink]:
        rows = self._read(
            lambda cur: cur.all(
                "SELECT f.run_id, f.origin_id, f.from_step FROM sagaway_forks f "
                "JOIN sagaway_runs r ON r.id = f.run_id WHERE f.origin_id = ? "
                "ORDER BY r.created_at, r.id",
                (run_id,),
            )
        )
        return [ForkLink(r[0], r[1], int(r[2])) for r in rows]
