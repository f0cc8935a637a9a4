"""The shop's own tables, in the same database as the store (a SQLite file or a PostgreSQL
schema) but outside sagaway's migrations: checkouts, orders, idempotency keys, sold units
and settlements. One class for both backends; SQL is written with `?` placeholders."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sagaway.store import resolve_url

__all__ = ["ShopDb"]

CLOSED = "closed INTEGER NOT NULL DEFAULT 0"
TABLES = """
CREATE TABLE IF NOT EXISTS shop_checkouts (
    id TEXT PRIMARY KEY, items TEXT NOT NULL, amount INTEGER NOT NULL, run_id TEXT,
    customer TEXT, confirmed INTEGER NOT NULL DEFAULT 0, order_id TEXT,
    created_at DOUBLE PRECISION NOT NULL, closed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS shop_orders (
    id TEXT PRIMARY KEY, checkout TEXT NOT NULL, amount INTEGER NOT NULL,
    status TEXT NOT NULL, charge TEXT, created_at DOUBLE PRECISION NOT NULL,
    placed_at DOUBLE PRECISION, settled_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS shop_orders_checkout ON shop_orders (checkout);
CREATE INDEX IF NOT EXISTS shop_orders_placed ON shop_orders (placed_at);
CREATE INDEX IF NOT EXISTS shop_orders_status ON shop_orders (status);
CREATE TABLE IF NOT EXISTS shop_idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, state TEXT NOT NULL, status INTEGER,
    headers TEXT, body TEXT, created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS shop_idempotency_created ON shop_idempotency (created_at);
CREATE TABLE IF NOT EXISTS shop_sold (
    order_id TEXT NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL,
    PRIMARY KEY (order_id, sku)
);
CREATE TABLE IF NOT EXISTS shop_settlements (
    day TEXT PRIMARY KEY, orders INTEGER NOT NULL, amount INTEGER NOT NULL
);
"""


class Transaction:
    """The statements of one transaction; `execute` returns a DB-API cursor."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self._conn, self._postgres = conn, postgres

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one statement (`?` placeholders)."""
        if self._postgres:
            sql = sql.replace("?", "%s")
        return self._conn.execute(sql, params)


class ShopDb:
    """Connections to the shop's tables in the store's database, created on first use.

    SQLite: one connection per thread, write transactions `BEGIN IMMEDIATE`. PostgreSQL: a
    pool of at most `pool_size` connections in the store's schema."""

    def __init__(self, url: str | None, pool_size: int = 4) -> None:
        self.url = resolve_url(url)
        self.postgres = self.url.split("://", 1)[0].lower() in ("postgres", "postgresql")
        self._local = threading.local()
        self._pool: Any = None
        if self.postgres:
            from psycopg_pool import ConnectionPool

            from sagaway.store._postgres_url import parse_url

            settings = parse_url(self.url)
            self.schema = settings.schema
            self._pool = ConnectionPool(
                settings.conninfo, min_size=1, max_size=pool_size, open=True, name="shop"
            )
        else:
            self.path = self.url[len("sqlite:///") :].split("?", 1)[0]
        self._create()

    def _create(self) -> None:
        statements = [s for s in TABLES.split(";") if s.strip()]
        with self.transaction() as tx:
            if self.postgres:
                # Processes starting together must not race to create the same tables.
                tx.execute("SELECT pg_advisory_xact_lock(hashtext('sagaway-shop-tables'))")
                tx.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            for statement in statements:
                tx.execute(statement)
            # Tables made before `closed` existed get it (NOT NULL DEFAULT 0: nothing closed).
            if self.postgres:
                tx.execute(f"ALTER TABLE shop_checkouts ADD COLUMN IF NOT EXISTS {CLOSED}")
            elif "closed" not in {r[1] for r in tx.execute("PRAGMA table_info(shop_checkouts)")}:
                tx.execute(f"ALTER TABLE shop_checkouts ADD COLUMN {CLOSED}")

    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        if self.postgres:
            with self._pool.connection() as conn, conn.transaction():
                yield Transaction(conn, True)
            return
        conn = self._sqlite()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Transaction(conn, False)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """The first row of a query, or None (read outside a write transaction)."""
        if self.postgres:
            with self._pool.connection() as conn:
                return conn.execute(sql.replace("?", "%s"), params).fetchone()
        return self._sqlite().execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Every row of a query."""
        if self.postgres:
            with self._pool.connection() as conn:
                return list(conn.execute(sql.replace("?", "%s"), params).fetchall())
        return list(self._sqlite().execute(sql, params).fetchall())

    def close(self) -> None:
        """Close the pool (PostgreSQL); SQLite connections close with their threads."""
        if self._pool is not None:
            self._pool.close()
