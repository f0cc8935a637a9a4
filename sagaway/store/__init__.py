"""Persistence: one Store interface, a SQLite and a PostgreSQL backend.

`open_store(url)` picks the backend from the URL: `sqlite:///relative.db`,
`sqlite:////absolute/path.db` (or a bare file path), `postgresql://user@host/db`.
SQLite options go in the query string: `sqlite:///shop.db?synchronous=NORMAL`.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sagaway.errors import ConfigurationError, StoreUnavailable
from sagaway.store.base import Store

__all__ = ["DEFAULT_URL", "Store", "open_store", "resolve_url"]

DEFAULT_URL = "sqlite:///sagaway.db"


def resolve_url(url: str | None) -> str:
    """The store URL to use: `url`, else $SAGAWAY_DB, else ./sagaway.db.

    A bare path (no scheme) means a SQLite file.
    """
    url = url or os.environ.get("SAGAWAY_DB") or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    return url


def open_store(
    url: str | None = None, *, create: bool = True, read_only: bool = False, **options: Any
) -> Store:
    """Open the store named by `url` (see `resolve_url`). Extra options go to the backend.

    `create=False` refuses a SQLite file or PostgreSQL schema without sagaway's tables
    instead of creating them. `read_only=True` (which implies it) writes nothing, takes no
    write lock, refuses a store not at this sagaway's schema version, and refuses writes.
    Raises StoreUnavailable (with what to install) when the backend's driver is missing.
    """
    url = resolve_url(url)
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        from sagaway.store.sqlite import SqliteStore

        parts = urlsplit(url)
        path = url[len("sqlite:///") :].split("?", 1)[0] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigurationError(
                f"{url!r} names no file: write sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        query = dict(parse_qsl(parts.query))
        unknown = set(query) - {"synchronous"}
        if unknown:
            raise ConfigurationError(
                f"unknown SQLite option(s) {sorted(unknown)} in {url!r}: the only one is "
                "synchronous=FULL|NORMAL|EXTRA"
            )
        if "synchronous" in query:
            options.setdefault("synchronous", query["synchronous"])
        return SqliteStore(path, create=create, read_only=read_only, **options)
    if scheme in ("postgres", "postgresql"):
        try:
            from sagaway.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreUnavailable(
                f"{scheme}:// stores need PostgreSQL support, which is not installed "
                f"(no module named {exc.name!r}): pip install 'sagaway[postgres]'"
            ) from None
        return PostgresStore(url, create=create, read_only=read_only, **options)
    raise ConfigurationError(
        f"unsupported store URL {url!r}: use sqlite:///path.db or postgresql://user@host/db"
    )
