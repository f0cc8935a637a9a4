"""The mail provider: slow by design (200 ms a call unless the faults say otherwise), one mail
per idempotency key, and the count of mails sent per order."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from sagaway.shop.providers._server import KEYS_SCHEMA, Call, Provider, Route, once, route

__all__ = ["Mail"]


class Mail(Provider):
    """`POST /mails` → 202."""

    NAME = "mail"
    LATENCY_MS = 200.0
    SCHEMA = (
        KEYS_SCHEMA
        + """
        CREATE TABLE IF NOT EXISTS mails (
            id TEXT PRIMARY KEY, recipient TEXT NOT NULL, order_id TEXT NOT NULL,
            template TEXT NOT NULL
        );
        """
    )

    def routes(self) -> list[Route]:
        return [route("POST", "/mails", self.send)]

    def send(self, call: Call) -> tuple[int, Any]:
        to, order, template = call.text("to"), call.text("order"), call.text("template")

        def create(conn: sqlite3.Connection) -> tuple[int, Any]:
            mail_id = f"mail_{uuid.uuid4().hex[:20]}"
            conn.execute("INSERT INTO mails VALUES (?, ?, ?, ?)", (mail_id, to, order, template))
            return 202, {"id": mail_id, "status": "queued"}

        return once(self, call, create)

    def stats(self) -> dict[str, Any]:
        rows = self.connection().execute("SELECT order_id, COUNT(*) FROM mails GROUP BY order_id")
        return {"sent_per_order": dict(rows)}
