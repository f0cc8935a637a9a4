"""The `AccessStore` contract over SQL: API tokens, browser sessions and the audit log."""

from __future__ import annotations

from typing import Any

from sagaway.store._sql_core import Cursorish, SqlCore
from sagaway.store.access import AuditRecord, SessionRecord, TokenRecord

__all__ = ["AccessStatements"]

_TOKEN_COLUMNS = "id, name, role, created_at, revoked_at"


def _token(row: Any) -> TokenRecord:
    return TokenRecord(row[0], row[1], row[2], float(row[3]), row[4])


class AccessStatements(SqlCore):
    """Tokens, sessions and the audit log."""

    def create_token(self, token_id: str, name: str, role: str, digest: str, now: float) -> None:
        self._write(
            lambda cur: cur.execute(
                "INSERT INTO sagaway_tokens (id, name, role, hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (token_id, name, role, digest, now),
            )
        )

    def tokens(self) -> list[TokenRecord]:
        rows = self._read(
            lambda cur: cur.all(
                f"SELECT {_TOKEN_COLUMNS} FROM sagaway_tokens ORDER BY created_at, id"
            )
        )
        return [_token(row) for row in rows]

    def token_by_hash(self, digest: str) -> TokenRecord | None:
        row = self._read(
            lambda cur: cur.one(
                f"SELECT {_TOKEN_COLUMNS} FROM sagaway_tokens "
                "WHERE hash = ? AND revoked_at IS NULL",
                (digest,),
            )
        )
        return None if row is None else _token(row)

    def revoke_token(self, token_id: str, now: float) -> TokenRecord | None:
        def work(cur: Cursorish) -> TokenRecord | None:
            cur.execute(
                "UPDATE sagaway_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, token_id),
            )
            cur.execute("DELETE FROM sagaway_sessions WHERE token_id = ?", (token_id,))
            row = cur.one(f"SELECT {_TOKEN_COLUMNS} FROM sagaway_tokens WHERE id = ?", (token_id,))
            return None if row is None else _token(row)

        return self._write(work)

    def create_session(
        self, digest: str, token_id: str, csrf: str, now: float, expires_at: float
    ) -> None:
        def work(cur: Cursorish) -> None:
            cur.execute("DELETE FROM sagaway_sessions WHERE expires_at < ?", (now,))
            cur.execute(
                "INSERT INTO sagaway_sessions (hash, token_id, csrf, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (digest, token_id, csrf, now, expires_at),
            )

        self._write(work)

    def session(self, digest: str, now: float) -> SessionRecord | None:
        row = self._read(
            lambda cur: cur.one(
                "SELECT t.id, t.name, t.role, t.created_at, t.revoked_at, s.csrf, s.expires_at "
                "FROM sagaway_sessions s JOIN sagaway_tokens t ON t.id = s.token_id "
                "WHERE s.hash = ? AND s.expires_at > ? AND t.revoked_at IS NULL",
                (digest, now),
            )
        )
        if row is None:
            return None
        return SessionRecord(_token(row[:5]), row[5], float(row[6]))

    def end_session(self, digest: str) -> None:
        self._write(
            lambda cur: cur.execute("DELETE FROM sagaway_sessions WHERE hash = ?", (digest,))
        )

    def record_audit(
        self, at: float, actor: str, action: str, run_id: str | None, detail: str, outcome: str
    ) -> int:
        return int(
            self._write(
                lambda cur: cur.only(
                    "INSERT INTO sagaway_audit (at, actor, action, run_id, detail, outcome) "
                    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (at, actor, action, run_id, detail, outcome),
                )[0]
            )
        )

    def audit(
        self, run_id: str | None = None, before: int | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        where: list[str] = []
        params: list[Any] = []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if before is not None:
            where.append("id < ?")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            lambda cur: cur.all(
                "SELECT id, at, actor, action, run_id, detail, outcome FROM sagaway_audit "
                f"{clause} ORDER BY id DESC LIMIT ?",
                (*params, limit),
            )
        )
        return [AuditRecord(int(r[0]), float(r[1]), *r[2:]) for r in rows]
