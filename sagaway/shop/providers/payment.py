"""The payment provider: charges taken once per idempotency key, refunds, and the counts that
show no order was charged twice.

A card token `tok_declined` is declined (402): a permanent failure the saga compensates.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from sagaway.shop.providers._server import KEYS_SCHEMA, Call, Failure, Provider, Route, once, route

__all__ = ["Payment"]


class Payment(Provider):
    """`POST /charges`, `GET /charges?order=`, `POST /charges/{id}/refund`."""

    NAME = "payment"
    SCHEMA = (
        KEYS_SCHEMA
        + """
        CREATE TABLE IF NOT EXISTS charges (
            id TEXT PRIMARY KEY, order_id TEXT NOT NULL, amount INTEGER NOT NULL,
            card TEXT NOT NULL, status TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS charges_order ON charges (order_id);
        """
    )

    def routes(self) -> list[Route]:
        return [
            route("POST", "/charges", self.charge),
            route("GET", "/charges", self.find),
            route("POST", "/charges/{id}/refund", self.refund),
        ]

    def charge(self, call: Call) -> tuple[int, Any]:
        order, card = call.text("order"), call.text("card")
        amount = call.body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise Failure(422, "the body needs 'amount', a positive number of cents")
        if not card.startswith("tok_"):
            raise Failure(422, f"card {card!r} is not a card token (tok_...)")

        def create(conn: sqlite3.Connection) -> tuple[int, Any]:
            if card == "tok_declined":
                raise Failure(402, "the card was declined: ask for another card")
            charge_id = f"ch_{uuid.uuid4().hex[:20]}"
            conn.execute(
                "INSERT INTO charges VALUES (?, ?, ?, ?, 'captured')",
                (charge_id, order, amount, card),
            )
            return 201, {"id": charge_id, "status": "captured", "order": order, "amount": amount}

        return once(self, call, create)

    def find(self, call: Call) -> tuple[int, Any]:
        order = call.query.get("order", "")
        rows = self.connection().execute(
            "SELECT id, status, amount FROM charges WHERE order_id = ? ORDER BY id", (order,)
        )
        return 200, {"charges": [{"id": i, "status": s, "amount": a} for i, s, a in rows]}

    def refund(self, call: Call) -> tuple[int, Any]:
        charge_id = call.params["id"]
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM charges WHERE id = ?", (charge_id,)).fetchone()
            if row is None:
                raise Failure(404, f"no charge {charge_id}")
            conn.execute("UPDATE charges SET status = 'refunded' WHERE id = ?", (charge_id,))
        return 200, {"id": charge_id, "status": "refunded"}

    def stats(self) -> dict[str, Any]:
        conn = self.connection()
        counts = dict(conn.execute("SELECT status, COUNT(*) FROM charges GROUP BY status"))
        per_order = dict(
            conn.execute("SELECT order_id, SUM(status = 'captured') FROM charges GROUP BY order_id")
        )
        return {
            "charges": sum(counts.values()),
            "refunds": counts.get("refunded", 0),
            "charged_per_order": per_order,
        }
