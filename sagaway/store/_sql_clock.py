"""The `StoreClock` statements over SQL."""

from __future__ import annotations

from sagaway.store._sql_core import Cursorish, SqlCore

__all__ = ["ClockStatements"]


class ClockStatements(SqlCore):
    """After a backward step of the clock: runs and messages due "now" by the old clock, due
    now again."""

    def hurry_unowned(self, now: float) -> int:
        def work(cur: Cursorish) -> int:
            count = cur.execute(
                "UPDATE sagaway_runs SET due_at = ? WHERE owner IS NULL AND due_at > ? "
                "AND (status IN ('pending', 'running', 'compensating') "
                "OR wake_pending = 1 OR cancel_requested = 1)",
                (now, now),
            ).rowcount
            # Messages published without a delay (ready at once), and their retries.
            count += cur.execute(
                "UPDATE sagaway_deliveries SET due_at = ? WHERE status = 'ready' AND due_at > ? "
                "AND message_id IN "
                "(SELECT id FROM sagaway_messages WHERE available_at <= published_at)",
                (now, now),
            ).rowcount
            if count:
                cur.wake()
            return count

        return self._write(work)
