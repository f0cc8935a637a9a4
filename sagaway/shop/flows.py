"""The shop's sagas: one checkout saga per checkout, its consumers, and the nightly settlement.

The checkout saga reserves stock, then waits durably for each screen — customer, confirm,
purchase — so a checkout resumes mid-way after any crash by construction; a screen not
reached in time raises `WaitTimeout` and the saga releases the stock; releasing it, the last
compensation, also closes the checkout and any order the shop accepted for it, so every
accepted order ends placed or compensated. At purchase it opens
the order and charges the card (the pivot: a circuit breaker parks it while the payment
provider is down, retries with jitter cover the rest, a 429 parks it until `Retry-After`),
then commits the reservation and places the order, publishing `order.placed` through the
outbox to the `mailer` group (one mail per order) and the `stock` group (units sold).

`build_app(db_url)` declares it all on a new App. The module-level `app` (for
`sagaway worker sagaway.shop.flows:app`) is built on first use from `$SAGAWAY_DB` and the
provider URLs in `$SAGAWAY_SHOP_PAYMENT_URL`, `$SAGAWAY_SHOP_INVENTORY_URL` and
`$SAGAWAY_SHOP_MAIL_URL`.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sagaway import App, Retry, current_step
from sagaway.messaging import Message
from sagaway.resilience import CircuitBreaker
from sagaway.shop._client import ProviderClient, ProviderUnavailable
from sagaway.shop._db import ShopDb

__all__ = ["ShopConfig", "build_app"]

ORDER_PLACED = "order.placed"


@dataclass(frozen=True)
class ShopConfig:
    """Where the providers are and how long a checkout waits for each screen (seconds).

    `payment_deadline` is how long a purchase may stay parked while the payment provider is
    refused by the breaker or its quota before the saga gives up and compensates."""

    payment_url: str = "http://127.0.0.1:8101"
    inventory_url: str = "http://127.0.0.1:8102"
    mail_url: str = "http://127.0.0.1:8103"
    customer_timeout: float = 1800.0
    confirm_timeout: float = 600.0
    purchase_timeout: float = 600.0
    payment_timeout: float = 3.0
    payment_deadline: float = 600.0
    pool_size: int = 4

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ShopConfig:
        """The configuration from `SAGAWAY_SHOP_*` variables (`PAYMENT_URL`,
        `INVENTORY_URL`, `MAIL_URL`, `CUSTOMER_TIMEOUT`, `CONFIRM_TIMEOUT`,
        `PURCHASE_TIMEOUT`, `PAYMENT_TIMEOUT`, `PAYMENT_DEADLINE`); unset ones keep their
        defaults. Raises ValueError naming a variable that is not a positive number."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, spec in cls.__dataclass_fields__.items():
            text = env.get(f"SAGAWAY_SHOP_{name.upper()}")
            if text is None:
                continue
            if name.endswith("_url"):
                values[name] = text
                continue
            try:
                number = float(text)
            except ValueError:
                number = -1.0
            if not number > 0:
                raise ValueError(
                    f"SAGAWAY_SHOP_{name.upper()}={text!r}: give a positive number of "
                    f"{'connections' if name == 'pool_size' else 'seconds'}"
                )
            values[name] = int(number) if spec.type in (int, "int") else number
        return cls(**values)


class ShopParts:
    """What the steps use, opened on first use: the shop's tables and provider clients."""

    def __init__(self, app: App, config: ShopConfig) -> None:
        self.app, self.config = app, config

    @functools.cached_property
    def db(self) -> ShopDb:
        _ = self.app.store  # the store first: it creates the SQLite file or the schema
        return ShopDb(self.app.url, pool_size=self.config.pool_size)

    @functools.cached_property
    def inventory(self) -> ProviderClient:
        return ProviderClient("inventory", self.config.inventory_url)

    @functools.cached_property
    def payment(self) -> ProviderClient:
        return ProviderClient("payment", self.config.payment_url, self.config.payment_timeout)

    @functools.cached_property
    def mail(self) -> ProviderClient:
        return ProviderClient("mail", self.config.mail_url, timeout=10.0)


def build_app(db_url: str | None = None, config: ShopConfig | None = None) -> App:
    """A new App on `db_url` (default `$SAGAWAY_DB`) with the shop's sagas and consumers;
    `config` defaults to `ShopConfig.from_env()`."""
    config = config or ShopConfig.from_env()
    app = App(db_url, concurrency=64, retry=Retry(attempts=5, base=0.1, cap=2.0))
    parts = ShopParts(app, config)
    _declare_checkout(app, parts)
    _declare_consumers(app, parts)
    _declare_settlement(app, parts)
    _declare_sweep(app, parts)
    return app


def _declare_checkout(app: App, shop: ShopParts) -> None:
    cfg = shop.config
    # Only the provider being down counts against the breaker: a declined card says nothing
    # about the provider's health. Shared: every worker process sees it open at once.
    payments = CircuitBreaker(
        "payment",
        failure_rate=0.5,
        min_calls=5,
        window=20,
        open_for=2.0,
        half_open_calls=2,
        record=ProviderUnavailable,
        shared=app.shared_breakers,
    )

    @app.step
    def reserve_stock(checkout_id: str, items: list[dict]) -> dict:
        """Hold the items at the inventory; out of stock (409) fails at once."""
        body = {"checkout": checkout_id, "items": items}
        return shop.inventory.call("POST", "/reservations", body, current_step().idempotency_key)

    @reserve_stock.compensation
    def release_stock(checkout_id: str, items: list[dict], result: dict | None = None) -> None:
        """Release the hold; without a result (the call may have taken effect, or it was
        refused), every hold of the checkout still reserved. The first step's compensation
        runs last, whatever step or wait failed: it ends the checkout too."""
        held = (
            [result] if result else _found(shop.inventory, f"/reservations?checkout={checkout_id}")
        )
        for hold in held:
            if hold.get("status", "reserved") == "reserved":
                shop.inventory.call("POST", f"/reservations/{hold['id']}/release")
        _end_checkout(shop.db, checkout_id)

    @app.step
    def open_order(order_id: str, checkout_id: str, amount: int) -> None:
        """The order exists from here on, pending until placed (or compensated)."""
        with shop.db.transaction() as tx:
            tx.execute(
                "INSERT INTO shop_orders (id, checkout, amount, status, created_at) "
                "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (id) DO NOTHING",
                (order_id, checkout_id, amount, time.time()),
            )

    @open_order.compensation
    def close_order(order_id: str, checkout_id: str, amount: int) -> None:
        with shop.db.transaction() as tx:
            tx.execute("UPDATE shop_orders SET status = 'compensated' WHERE id = ?", (order_id,))

    @app.step(
        pivot=True,
        retry=Retry(attempts=10, base=0.2, cap=3.0),
        timeout=cfg.payment_timeout + 1.0,
        breaker=payments,
        deadline=cfg.payment_deadline,
    )
    def charge_card(order_id: str, amount: int, card: str) -> dict:
        """Charge once per step (the provider dedups on the idempotency key). The pivot."""
        body = {"order": order_id, "amount": amount, "card": card}
        return shop.payment.call("POST", "/charges", body, current_step().idempotency_key)

    @charge_card.compensation
    def refund(order_id: str, amount: int, card: str, result: dict | None = None) -> None:
        """Refund what the provider captured for the order, if anything."""
        taken = [result] if result else _found(shop.payment, f"/charges?order={order_id}")
        for charge in taken:
            if charge.get("status") == "captured":
                shop.payment.call("POST", f"/charges/{charge['id']}/refund")

    @app.step(retry=Retry(attempts=None, base=0.2, cap=10.0))
    def commit_stock(reservation_id: str) -> None:
        """After the pivot: retried until the inventory answers, never compensated."""
        shop.inventory.call("POST", f"/reservations/{reservation_id}/commit")

    @app.step
    def place_order(order_id: str, charge_id: str, email: str, items: list[dict]) -> None:
        """Mark the order placed; `order.placed` commits with this step's completion."""
        with shop.db.transaction() as tx:
            tx.execute(
                "UPDATE shop_orders SET status = 'placed', charge = ?, placed_at = ? WHERE id = ?",
                (charge_id, time.time(), order_id),
            )
        payload = {"order": order_id, "email": email, "items": items}
        current_step().publish(ORDER_PLACED, payload, key=order_id)

    @app.saga()
    def checkout(ctx: Any, checkout_id: str, items: list[dict], amount: int) -> dict:
        """cart → customer → confirm → purchase → order placed."""
        hold = reserve_stock(checkout_id, items)
        customer = ctx.wait("customer", timeout=cfg.customer_timeout)
        ctx.wait("confirm", timeout=cfg.confirm_timeout)
        purchase = ctx.wait("purchase", timeout=cfg.purchase_timeout)
        order_id = purchase["order"]
        open_order(order_id, checkout_id, amount)
        charge = charge_card(order_id, amount, purchase["card"])
        commit_stock(hold["id"])
        place_order(order_id, charge["id"], customer["email"], items)
        return {"order": order_id, "charge": charge["id"]}


def _end_checkout(db: ShopDb, checkout_id: str) -> None:
    """The checkout will place no order: from now on the shop refuses its purchase, and an
    order it accepted that the saga never opened (the purchase came before the reservation
    was refused, or the run was cancelled) is closed as compensated. One transaction that
    takes the checkout's row first, so it serialises with the purchase's conditional update
    of that row: a purchase either comes first, and its order is closed here, or is refused."""
    with db.transaction() as tx:
        tx.execute("UPDATE shop_checkouts SET closed = 1 WHERE id = ?", (checkout_id,))
        tx.execute(
            "UPDATE shop_orders SET status = 'compensated' "
            "WHERE checkout = ? AND status = 'pending'",
            (checkout_id,),
        )


def _found(client: ProviderClient, path: str) -> list[dict]:
    answer = client.call("GET", path)
    return next((v for v in answer.values() if isinstance(v, list)), [])


def _declare_consumers(app: App, shop: ShopParts) -> None:
    @app.consumer(ORDER_PLACED, group="mailer", concurrency=8, retry=Retry(attempts=20, cap=10.0))
    def send_confirmation(message: Message) -> None:
        """One mail per order: the mail provider dedups on the group's idempotency key."""
        body = {"to": message.payload["email"], "order": message.payload["order"]}
        body["template"] = "order-placed"
        shop.mail.call("POST", "/mails", body, message.idempotency_key)

    @app.consumer(ORDER_PLACED, group="stock")
    def count_sold(message: Message) -> None:
        """Units sold per sku, once per order line however often the message comes."""
        order = message.payload["order"]
        with shop.db.transaction() as tx:
            for item in message.payload["items"]:
                tx.execute(
                    "INSERT INTO shop_sold (order_id, sku, qty) VALUES (?, ?, ?) "
                    "ON CONFLICT (order_id, sku) DO NOTHING",
                    (order, item["sku"], item["qty"]),
                )


def _declare_settlement(app: App, shop: ShopParts) -> None:
    @app.step
    def orders_of_day(day: str) -> list[str]:
        """The orders placed on `day` (UTC) not settled yet."""
        start = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
        rows = shop.db.all(
            "SELECT id FROM shop_orders WHERE status = 'placed' AND placed_at >= ? "
            "AND placed_at < ? AND settled_at IS NULL ORDER BY id",
            (start, start + 86400),
        )
        return [row[0] for row in rows]

    @app.step
    def settle_order(order_id: str) -> int:
        """The amount the provider holds for the order; the order is marked settled."""
        charges = _found(shop.payment, f"/charges?order={order_id}")
        amount = sum(c["amount"] for c in charges if c["status"] == "captured")
        with shop.db.transaction() as tx:
            tx.execute(
                "UPDATE shop_orders SET settled_at = ? WHERE id = ?", (time.time(), order_id)
            )
        return int(amount)

    @app.step
    def record_settlement(day: str, orders: int, amount: int) -> None:
        with shop.db.transaction() as tx:
            tx.execute(
                "INSERT INTO shop_settlements (day, orders, amount) VALUES (?, ?, ?) "
                "ON CONFLICT (day) DO UPDATE SET orders = shop_settlements.orders + ?, "
                "amount = shop_settlements.amount + ?",
                (day, orders, amount, orders, amount),
            )

    @app.schedule("0 2 * * *", tz="UTC")
    @app.saga()
    def settlement(ctx: Any, tick: str | None = None) -> dict:
        """Every night: the day before's orders, settled eight at a time."""
        moment = datetime.fromisoformat(tick) if tick else ctx.now()
        day = (moment - timedelta(days=1)).date().isoformat()
        orders = orders_of_day(day)
        amounts = ctx.map(settle_order, orders, concurrency=8)
        record_settlement(day, len(orders), sum(amounts))
        return {"day": day, "orders": len(orders), "amount": sum(amounts)}


def _declare_sweep(app: App, shop: ShopParts) -> None:
    @app.step
    def close_orders_of_ended_checkouts() -> int:
        """Close the pending orders whose checkout's run ended compensated or cancelled
        without its `release_stock` ending the checkout: a run cancelled before its first
        step has nothing to compensate. How many were closed."""
        with shop.db.transaction() as tx:
            return int(
                tx.execute(
                    "UPDATE shop_orders SET status = 'compensated' WHERE status = 'pending' "
                    "AND EXISTS (SELECT 1 FROM shop_checkouts c "
                    "JOIN sagaway_runs r ON r.id = c.run_id WHERE c.id = shop_orders.checkout "
                    "AND r.status IN ('compensated', 'cancelled'))"
                ).rowcount
            )

    @app.schedule("*/5 * * * *", tz="UTC")
    @app.saga()
    def sweep_orders(ctx: Any, tick: str | None = None) -> int:
        """Every five minutes: no accepted order stays pending once its checkout ended."""
        return close_orders_of_ended_checkouts()


@functools.cache
def _module_app() -> App:
    return build_app(os.environ.get("SAGAWAY_DB"))


def __getattr__(name: str) -> Any:
    # `app` is built when first asked for, so that importing the module opens nothing.
    if name == "app":
        return _module_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
