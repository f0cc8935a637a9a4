"""The inventory provider: reservations that hold stock, released or committed once each, and
counts that show stock is conserved (initial = available + reserved + sold for every sku)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from sagaway.shop.catalog import STOCK
from sagaway.shop.providers._server import KEYS_SCHEMA, Call, Failure, Provider, Route, once, route

__all__ = ["Inventory"]


class Inventory(Provider):
    """`POST /reservations`, `GET /reservations?checkout=`, `POST /reservations/{id}/release`
    and `/commit`. The stock at the start is the catalog's unless `stock` says otherwise; it is
    set when the file is created and kept across restarts."""

    NAME = "inventory"
    SCHEMA = (
        KEYS_SCHEMA
        + """
        CREATE TABLE IF NOT EXISTS stock (
            sku TEXT PRIMARY KEY, initial INTEGER NOT NULL, available INTEGER NOT NULL,
            reserved INTEGER NOT NULL DEFAULT 0, sold INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS reservations (
            id TEXT PRIMARY KEY, checkout TEXT NOT NULL, items TEXT NOT NULL,
            status TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS reservations_checkout ON reservations (checkout);
        """
    )

    def __init__(self, db_path: str, stock: dict[str, int] | None = None) -> None:
        super().__init__(db_path)
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO stock (sku, initial, available) VALUES (?, ?, ?) "
                "ON CONFLICT (sku) DO NOTHING",
                [(sku, n, n) for sku, n in (stock or STOCK).items()],
            )

    def routes(self) -> list[Route]:
        return [
            route("POST", "/reservations", self.reserve),
            route("GET", "/reservations", self.find),
            route("GET", "/stock", self.stock),
            route("POST", "/reservations/{id}/release", self.release),
            route("POST", "/reservations/{id}/commit", self.commit),
        ]

    def _items(self, call: Call) -> dict[str, int]:
        items = call.body.get("items") if isinstance(call.body, dict) else None
        wanted: dict[str, int] = {}
        for item in items if isinstance(items, list) and items else [None]:
            if not isinstance(item, dict) or not isinstance(item.get("sku"), str):
                raise Failure(422, 'items must be a list of {"sku": ..., "qty": ...}')
            qty = item.get("qty")
            if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                raise Failure(422, f"qty of {item['sku']!r} must be a positive whole number")
            wanted[item["sku"]] = wanted.get(item["sku"], 0) + qty
        return wanted

    def reserve(self, call: Call) -> tuple[int, Any]:
        checkout, wanted = call.text("checkout"), self._items(call)

        def create(conn: sqlite3.Connection) -> tuple[int, Any]:
            for sku, qty in wanted.items():
                row = conn.execute("SELECT available FROM stock WHERE sku = ?", (sku,)).fetchone()
                if row is None:
                    raise Failure(422, f"no product {sku!r}")
                if row[0] < qty:
                    raise Failure(409, f"out of stock: {row[0]} {sku} left, {qty} wanted")
            for sku, qty in wanted.items():
                conn.execute(
                    "UPDATE stock SET available = available - ?, reserved = reserved + ? "
                    "WHERE sku = ?",
                    (qty, qty, sku),
                )
            held = f"res_{uuid.uuid4().hex[:20]}"
            conn.execute(
                "INSERT INTO reservations VALUES (?, ?, ?, 'reserved')",
                (held, checkout, json.dumps(wanted)),
            )
            return 201, {"id": held, "status": "reserved"}

        return once(self, call, create)

    def find(self, call: Call) -> tuple[int, Any]:
        rows = self.connection().execute(
            "SELECT id, status FROM reservations WHERE checkout = ? ORDER BY id",
            (call.query.get("checkout", ""),),
        )
        return 200, {"reservations": [{"id": i, "status": s} for i, s in rows]}

    def _settle(self, call: Call, to: str, moves: str) -> tuple[int, Any]:
        held = call.params["id"]
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT items, status FROM reservations WHERE id = ?", (held,)
            ).fetchone()
            if row is None:
                raise Failure(404, f"no reservation {held}")
            if row[1] == to:  # done before: the same answer again
                return 200, {"id": held, "status": to}
            if row[1] != "reserved":
                raise Failure(409, f"reservation {held} is {row[1]}: it cannot become {to}")
            for sku, qty in json.loads(row[0]).items():
                conn.execute(
                    f"UPDATE stock SET reserved = reserved - ?, {moves} = {moves} + ? "
                    "WHERE sku = ?",
                    (qty, qty, sku),
                )
            conn.execute("UPDATE reservations SET status = ? WHERE id = ?", (to, held))
        return 200, {"id": held, "status": to}

    def release(self, call: Call) -> tuple[int, Any]:
        return self._settle(call, "released", "available")

    def commit(self, call: Call) -> tuple[int, Any]:
        return self._settle(call, "committed", "sold")

    def stock(self, call: Call) -> tuple[int, Any]:
        """Units available per sku (what the catalog shows as in stock)."""
        rows = self.connection().execute("SELECT sku, available FROM stock")
        return 200, {"available": dict(rows)}

    def stats(self) -> dict[str, Any]:
        rows = list(
            self.connection().execute("SELECT sku, initial, available, reserved, sold FROM stock")
        )
        return {
            name: {r[0]: r[i] for r in rows}
            for i, name in enumerate(("initial", "available", "reserved", "sold"), start=1)
        }
