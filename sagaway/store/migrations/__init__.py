"""Versioned schema migrations, one folder of numbered SQL files per backend."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from sagaway.errors import SchemaVersionError, StoreUnavailable

__all__ = ["apply", "check", "latest", "migrations", "statements", "stored_version"]

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations(backend: str) -> list[tuple[int, str]]:
    """(version, SQL text) of every migration of `backend`, in order."""
    found = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest(backend: str) -> int:
    """The schema version this sagaway writes for `backend`."""
    return migrations(backend)[-1][0]


def statements(sql: str) -> list[str]:
    """Split a migration into statements (migrations keep `;` out of strings and comments)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


# Whether the connection's database (SQLite) or schema (PostgreSQL) has sagaway's meta table.
_META_EXISTS = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sagaway_meta'",
    "postgres": "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() "
    "AND tablename = 'sagaway_meta'",
}


def stored_version(conn: Any, backend: str, where: str) -> int | None:
    """The schema version recorded in the database `conn` sees, None when it holds no
    sagaway schema. Reads only. Raises StoreUnavailable when the recorded version is not a
    number (the meta table was edited by hand)."""
    if conn.execute(_META_EXISTS[backend]).fetchone() is None:
        return None
    row = conn.execute("SELECT value FROM sagaway_meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise StoreUnavailable(
            f"{where} records sagaway schema version {row[0]!r}, which is not a number: "
            "sagaway_meta was changed by hand; set schema_version back to the number it had "
            "or restore the database from a backup"
        ) from None


def no_schema(where: str) -> StoreUnavailable:
    """The error for a database that exists but holds no sagaway schema."""
    return StoreUnavailable(
        f"{where} holds no sagaway tables: name sagaway's database with --db or "
        "$SAGAWAY_DB, or start an App or `sagaway worker` on it to create them"
    )


def check(conn: Any, backend: str, where: str) -> None:
    """Make sure, reading only, that the database `conn` sees holds this sagaway's schema.

    Raises StoreUnavailable for a database without sagaway's tables or with an older schema
    (which only a writer may upgrade), SchemaVersionError for one written by a newer sagaway.
    """
    current = stored_version(conn, backend, where)
    newest = latest(backend)
    if current is None:
        raise no_schema(where)
    if current > newest:
        raise _newer(where, current, newest)
    if current < newest:
        raise StoreUnavailable(
            f"{where} has sagaway schema version {current}, older than this sagaway's "
            f"{newest}, and is opened read-only: start an App or `sagaway worker` on it once "
            "to upgrade it"
        )


def _newer(where: str, current: int, newest: int) -> SchemaVersionError:
    return SchemaVersionError(
        f"{where} has sagaway schema version {current}, but this sagaway knows versions up "
        f"to {newest}: upgrade sagaway to open it (it was written by a newer release)"
    )


def apply(conn: Any, backend: str, where: str, mark: str = "?", create: bool = True) -> None:
    """Bring the schema `conn` sees up to date, inside the caller's transaction.

    `where` names the database in errors; `mark` is the driver's parameter placeholder.
    With `create=False` a database without sagaway's tables is refused (StoreUnavailable)
    before anything is written. Raises SchemaVersionError if the database was written by a
    newer sagaway.
    """
    newest = latest(backend)
    current = stored_version(conn, backend, where)
    if current is None:
        if not create:
            raise no_schema(where)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS sagaway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        current = 0
    if current > newest:
        raise _newer(where, current, newest)
    if current == newest:
        return
    for version, sql in migrations(backend):
        if version > current:
            for statement in statements(sql):
                conn.execute(statement)
    conn.execute(
        f"INSERT INTO sagaway_meta (key, value) VALUES ('schema_version', {mark}) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(newest),),
    )
