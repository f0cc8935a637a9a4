"""The demonstration shop: a checkout saga over simulated stock, payment and mail services.

The "services" keep their state in their own SQLite file ($SAGAWAY_DEMO_SHOP), separate from
sagaway's store ($SAGAWAY_DB), as real services would. Faults are injected through the
environment so that every worker process sees the same ones:

- SAGAWAY_DEMO_OUTAGE="start,end": the payment provider is down between those epoch seconds;
- SAGAWAY_DEMO_MAIL_FAILURE: probability that a mail delivery fails;
- SAGAWAY_DEMO_LOST_RESPONSE: probability that a charge succeeds at the provider but its
  response is lost (the retry, with the same idempotency key, must not charge twice).

`app` is importable as `sagaway.demo.shop:app` for `sagaway worker`.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from typing import Any

from sagaway import App, Permanent, Retry, current_step
from sagaway.resilience import CircuitBreaker
from sagaway.shop.catalog import PRICES as PRICES  # the driver prices its carts with it
from sagaway.shop.catalog import STOCK

CATALOG = STOCK  # sku -> units in stock at the start

_local = threading.local()


class OutOfStock(Exception):
    """Not enough units of a product."""


class PaymentUnavailable(ConnectionError):
    """The payment provider did not answer."""


class MailBounced(ConnectionError):
    """The mail relay refused the message for now."""


def shop_db() -> sqlite3.Connection:
    """This thread's connection to the services' database."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(os.environ["SAGAWAY_DEMO_SHOP"], timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _local.conn = conn
    return conn


def create_shop(path: str) -> None:
    """A fresh services database with the catalog in stock."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE stock (sku TEXT PRIMARY KEY, available INTEGER NOT NULL);
        CREATE TABLE reservations (cart_id TEXT PRIMARY KEY, items TEXT NOT NULL,
                                   status TEXT NOT NULL);
        CREATE TABLE charges (idempotency_key TEXT PRIMARY KEY, cart_id TEXT NOT NULL,
                              amount INTEGER NOT NULL, refunded INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE mails (id INTEGER PRIMARY KEY, cart_id TEXT NOT NULL, email TEXT NOT NULL);
        """
    )
    conn.executemany("INSERT INTO stock VALUES (?, ?)", CATALOG.items())
    conn.close()


def _transaction(work: Any) -> Any:
    conn = shop_db()
    conn.execute("BEGIN IMMEDIATE")
    try:
        value = work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return value


def _chance(variable: str) -> bool:
    return random.random() < float(os.environ.get(variable, "0"))


def _payment_down() -> bool:
    window = os.environ.get("SAGAWAY_DEMO_OUTAGE")
    if not window:
        return False
    start, end = (float(x) for x in window.split(","))
    return start <= time.time() < end


app = App(
    os.environ.get("SAGAWAY_DB"),
    concurrency=64,
    retry=Retry(attempts=4, base=0.05, cap=0.5),
    compensation_retry=Retry(attempts=10, base=0.05, cap=0.5),
)


@app.step
def reserve_stock(cart_id: str, items: dict[str, int]) -> dict:
    """Hold the cart's items; out of stock is permanent (no retry helps)."""
    time.sleep(0.02)  # the stock service

    def work(conn: sqlite3.Connection) -> dict:
        held = conn.execute(
            "SELECT status FROM reservations WHERE cart_id = ?", (cart_id,)
        ).fetchone()
        if held is not None:  # a retry of a reservation that went through
            return {"cart": cart_id, "status": held[0]}
        for sku, qty in items.items():
            row = conn.execute("SELECT available FROM stock WHERE sku = ?", (sku,)).fetchone()
            if row is None or row[0] < qty:
                raise Permanent(OutOfStock(f"only {row[0] if row else 0} {sku} left"))
        for sku, qty in items.items():
            conn.execute("UPDATE stock SET available = available - ? WHERE sku = ?", (qty, sku))
        conn.execute(
            "INSERT INTO reservations VALUES (?, ?, 'reserved')", (cart_id, json.dumps(items))
        )
        return {"cart": cart_id, "status": "reserved"}

    return _transaction(work)


@reserve_stock.compensation
def release_stock(cart_id: str, items: dict[str, int], result: dict | None = None) -> None:
    """Put held items back; nothing to do if the reservation never happened."""

    def work(conn: sqlite3.Connection) -> None:
        row = conn.execute(
            "SELECT items, status FROM reservations WHERE cart_id = ?", (cart_id,)
        ).fetchone()
        if row is None or row[1] != "reserved":
            return
        for sku, qty in json.loads(row[0]).items():
            conn.execute("UPDATE stock SET available = available + ? WHERE sku = ?", (qty, sku))
        conn.execute("UPDATE reservations SET status = 'released' WHERE cart_id = ?", (cart_id,))

    _transaction(work)


# While the provider fails, the breaker opens and checkouts park at this step instead of
# failing: they complete when it recovers, or compensate if it stays down past the deadline.
payments = CircuitBreaker(
    "payments", failure_rate=0.5, min_calls=6, window=20, open_for=1.0, half_open_calls=2
)


@app.step(pivot=True, timeout=2.0, breaker=payments, deadline=20.0)
def charge(cart_id: str, amount: int) -> dict:
    """Charge the customer, idempotently per saga step. The point of no return."""
    key = current_step().idempotency_key
    time.sleep(0.25)  # the payment provider takes its time
    if _payment_down():
        raise PaymentUnavailable("payment provider unavailable (HTTP 503)")

    def work(conn: sqlite3.Connection) -> dict:
        conn.execute(
            "INSERT INTO charges (idempotency_key, cart_id, amount) VALUES (?, ?, ?) "
            "ON CONFLICT (idempotency_key) DO NOTHING",
            (key, cart_id, amount),
        )
        conn.execute("UPDATE reservations SET status = 'sold' WHERE cart_id = ?", (cart_id,))
        return {"charge": key, "amount": amount}

    receipt = _transaction(work)
    if _chance("SAGAWAY_DEMO_LOST_RESPONSE"):
        raise PaymentUnavailable("connection reset after the charge was taken")
    return receipt


@charge.compensation
def refund(cart_id: str, amount: int, result: dict | None = None) -> None:
    """Refund whatever the provider charged under this step's key, if anything."""
    key = current_step().idempotency_key.removesuffix("/undo")

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE charges SET refunded = 1 WHERE idempotency_key = ?", (key,))
        conn.execute(
            "UPDATE reservations SET status = 'reserved' WHERE cart_id = ? AND status = 'sold'",
            (cart_id,),
        )

    _transaction(work)


@app.step(retry=Retry(attempts=12, base=0.02, cap=0.3))
def send_mail(email: str, cart_id: str) -> None:
    """Send the confirmation; the relay is flaky, so this is retried (never compensated)."""
    time.sleep(0.05)  # the mail relay
    if _chance("SAGAWAY_DEMO_MAIL_FAILURE"):
        raise MailBounced("421 try again later")
    _transaction(
        lambda conn: conn.execute(
            "INSERT INTO mails (cart_id, email) VALUES (?, ?)", (cart_id, email)
        )
    )


@app.saga()
def checkout(ctx: Any, cart: dict) -> dict:
    """cart -> customer info -> confirmation -> purchase -> mail."""
    reserve_stock(cart["id"], cart["items"])
    info = ctx.wait("customer_info", timeout=float(os.environ.get("SAGAWAY_DEMO_PATIENCE", "1800")))
    ctx.wait("confirmed", timeout=float(os.environ.get("SAGAWAY_DEMO_PATIENCE", "600")))
    receipt = charge(cart["id"], cart["total"])
    send_mail(info["email"], cart["id"])
    return {"order": cart["id"], "charge": receipt["charge"]}
