"""Versioned schema migrations, one folder of numbered SQL files per backend."""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["latest", "migrations", "statements"]

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
