"""Versioned schema migrations, one folder of numbered SQL files per backend."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from sagaway.errors import SchemaVersionError

__all__ = ["apply", "latest", "migrations", "statements"]

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


def apply(conn: Any, backend: str, where: str, mark: str = "?") -> None:
    """Bring the schema `conn` sees up to date, inside the caller's transaction.

    `where` names the database in errors; `mark` is the driver's parameter placeholder.
    Raises SchemaVersionError if the database was written by a newer sagaway.
    """
    newest = latest(backend)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS sagaway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
    row = conn.execute("SELECT value FROM sagaway_meta WHERE key = 'schema_version'").fetchone()
    current = int(row[0]) if row else 0
    if current > newest:
        raise SchemaVersionError(
            f"{where} has sagaway schema version {current}, but this sagaway knows versions up "
            f"to {newest}: upgrade sagaway to open it (it was written by a newer release)"
        )
    for version, sql in migrations(backend):
        if version > current:
            for statement in statements(sql):
                conn.execute(statement)
    conn.execute(
        f"INSERT INTO sagaway_meta (key, value) VALUES ('schema_version', {mark}) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(max(current, newest)),),
    )
