"""The end of a sale: wait for the backlog to drain, then read what the shop, its store and the
providers hold, and check the invariants against it.

Each figure names its source: `shop` (the shop's own HTTP routes), `store` (the sagaway store
the workers write), `payment` / `inventory` / `mail` (the provider's `GET /_stats`), or
`customers` (what the load generator saw in the responses).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from sagaway.shop.sale._load import Recorder, gather_limited

__all__ = ["ENDED_ORDER", "Audit", "Invariant", "audit", "drain", "store_figures"]

# Order statuses after which nothing more happens to the order.
ENDED_ORDER = frozenset({"placed", "compensated", "failed", "cancelled", "succeeded"})


@dataclass(frozen=True)
class Invariant:
    """One property that must hold at the end of a sale: `value` must equal `expected` (or,
    with `at_least`, be at least `expected`)."""

    name: str
    value: Any
    expected: Any
    source: str
    detail: str = ""
    at_least: bool = False

    @property
    def ok(self) -> bool:
        """Whether it holds."""
        return bool(self.value >= self.expected if self.at_least else self.value == self.expected)

    @property
    def must_be(self) -> str:
        """What the value must be, for people: `0`, `>= 1`."""
        return f">= {self.expected}" if self.at_least else str(self.expected)


@dataclass
class Audit:
    """What the end of the sale found."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> GET /orders/{id}
    checkouts: dict[str, list[str]] = field(default_factory=dict)  # id -> its orders (shop)
    provider_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    shop_stats: dict[str, Any] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)
    drained_in: float = 0.0
    invariants: list[Invariant] = field(default_factory=list)

    @property
    def order_statuses(self) -> dict[str, int]:
        """How many orders ended in each status."""
        return dict(Counter(str(o.get("status")) for o in self.orders.values()))

    @property
    def ok(self) -> bool:
        """Whether every invariant holds."""
        return all(i.ok for i in self.invariants)


async def _json(client: httpx.AsyncClient, url: str) -> Any:
    response = await client.get(url)
    response.raise_for_status()
    return response.json()


async def _read_orders(client: httpx.AsyncClient, ids: list[str]) -> dict[str, dict[str, Any]]:
    answers = await gather_limited([lambda i=i: _json(client, f"/orders/{i}") for i in ids], 16)
    return {i: a for i, a in zip(ids, answers, strict=True) if isinstance(a, dict)}


def _mails_pending(orders: dict[str, dict[str, Any]], mail: dict[str, Any]) -> int:
    sent = mail.get("sent_per_order", {})
    return sum(1 for i, o in orders.items() if o.get("status") == "placed" and not sent.get(i))


async def _orders_of_checkouts(
    client: httpx.AsyncClient, checkouts: list[str]
) -> dict[str, list[str]]:
    """The orders `GET /checkouts/{id}` lists for each checkout that could be read."""
    answers = await gather_limited(
        [lambda i=i: _json(client, f"/checkouts/{i}") for i in checkouts], 16
    )
    return {
        checkout: [str(o) for o in answer.get("orders", [])]
        for checkout, answer in zip(checkouts, answers, strict=True)
        if isinstance(answer, dict)
    }


def known_orders(recorder: Recorder, checkouts: dict[str, list[str]]) -> set[str]:
    """Every order a customer was given, and every order the shop lists for a checkout the
    customers created: a purchase whose answer never reached its customer (the load ended,
    or the customer gave up waiting) may still have placed an order."""
    listed = {o for orders in checkouts.values() for o in orders}
    return recorder_order_ids(recorder) | listed


async def drain(
    client: httpx.AsyncClient, providers: dict[str, str], recorder: Recorder, seconds: float
) -> tuple[dict[str, dict[str, Any]], float]:
    """Poll every order the sale knows of (`known_orders`) until each has ended and every
    placed order's mail went out, or `seconds` passed; return the orders last read and the
    time it took."""
    began = time.monotonic()
    listed = await _orders_of_checkouts(client, sorted(recorder.units_by_checkout))
    ids = sorted(known_orders(recorder, listed))
    orders: dict[str, dict[str, Any]] = {}
    while True:
        open_ids = [i for i in ids if orders.get(i, {}).get("status") not in ENDED_ORDER]
        orders.update(await _read_orders(client, open_ids))
        mail = await _json(client, f"{providers['mail']}/_stats")
        unended = sum(1 for i in ids if orders.get(i, {}).get("status") not in ENDED_ORDER)
        if unended == 0 and _mails_pending(orders, mail) == 0:
            break
        if time.monotonic() - began >= seconds:
            break
        await asyncio.sleep(0.5)
    return orders, time.monotonic() - began


def store_figures(db_url: str, since: float) -> dict[str, Any]:
    """Runs per saga and status, and the runs that parked (a breaker, quota or bulkhead made
    them wait) with how they ended, read from the sagaway store: those created at `since` or
    later (a PostgreSQL database may hold earlier sales' runs)."""
    from sagaway import App

    app = App(db_url)
    try:
        store = app.store
        runs = [r for r in store.list_runs(limit=10**7) if r.created_at >= since]
        by_status = Counter(f"{r.saga}:{r.status}" for r in runs)
        status = {r.id: r.status for r in runs}
        parked_ids = {e.run_id for e in store.events(kind="parked", limit=10**7)} & set(status)
        parked = Counter(str(status.get(i, "unknown")) for i in parked_ids)
        return {
            "runs": sum(by_status.values()),
            "runs_by_saga_status": dict(sorted(by_status.items())),
            "parked_runs": len(parked_ids),
            "parked_then": dict(parked),
            "parked_and_resumed": parked.get("succeeded", 0),
        }
    finally:
        app.close()


async def audit(
    client: httpx.AsyncClient,
    providers: dict[str, str],
    recorder: Recorder,
    orders: dict[str, dict[str, Any]],
) -> Audit:
    """Read the shop and the providers after the drain and check the invariants."""
    result = Audit(orders=orders)
    for name, url in providers.items():
        result.provider_stats[name] = await _json(client, f"{url}/_stats")
    result.shop_stats = await _json(client, "/_shop/stats")
    result.checkouts = await _orders_of_checkouts(client, sorted(recorder.units_by_checkout))
    # An order listed now that the drain did not know of is read too (and, if it has not
    # ended, counts as not ended after the drain).
    missing = sorted(known_orders(recorder, result.checkouts) - set(result.orders))
    result.orders.update(await _read_orders(client, missing))
    result.invariants = invariants(result, recorder)
    return result


def invariants(result: Audit, recorder: Recorder) -> list[Invariant]:
    """The properties a sale must keep, from the figures `result` read."""
    pay = result.provider_stats.get("payment", {})
    inv = result.provider_stats.get("inventory", {})
    mail = result.provider_stats.get("mail", {})
    charged: dict[str, int] = pay.get("charged_per_order", {})
    sent: dict[str, int] = mail.get("sent_per_order", {})
    placed = {i for i, o in result.orders.items() if o.get("status") == "placed"}
    undone = {i for i, o in result.orders.items() if o.get("status") == "compensated"}
    key_dupes = [k for k, orders in recorder.orders_by_key.items() if len(orders) > 1]
    shop_dupes = [c for c, orders in result.checkouts.items() if len(orders) > 1]
    unread = sorted(set(recorder.units_by_checkout) - set(result.checkouts))
    skus = sorted(set(inv.get("initial", {})))

    def stock(kind: str, sku: str) -> int:
        return int(inv.get(kind, {}).get(sku, 0))

    unbalanced = [
        sku
        for sku in skus
        if stock("initial", sku)
        != stock("available", sku) + stock("reserved", sku) + stock("sold", sku)
    ]
    placed_units = sum(
        recorder.units_by_checkout.get(str(result.orders[i].get("checkout")), 0) for i in placed
    )
    sold_units = sum(stock("sold", sku) for sku in skus)
    unended = known_orders(recorder, result.checkouts) - {
        i for i in result.orders if _ended(result, i)
    }
    orders_of = "shop: GET /orders/{id}"
    charges = "payment: /_stats charged_per_order; " + orders_of
    mails = "mail: /_stats sent_per_order; " + orders_of
    return [
        Invariant(
            "orders placed (a sale that placed none proved nothing)",
            len(placed),
            1,
            orders_of,
            at_least=True,
        ),
        _none("duplicate orders (one purchase key, several orders)", key_dupes, "customers: "
              "the purchase responses"),
        _none("duplicate orders (one checkout, several orders)", shop_dupes,
              "shop: GET /checkouts/{id}",
              f"{len(unread)} checkouts could not be read" if unread else ""),
        _none("double charges (an order charged more than once)",
              [i for i, n in charged.items() if n > 1], "payment: /_stats charged_per_order"),
        _none("placed orders not charged exactly once",
              [i for i in placed if charged.get(i, 0) != 1], charges),
        _none("compensated orders still charged",
              [i for i in undone if charged.get(i, 0) > 0], charges),
        _none("stock not conserved (initial != available + reserved + sold)", unbalanced,
              "inventory: /_stats"),
        Invariant("units sold minus units in placed orders", sold_units - placed_units, 0,
                  "inventory: /_stats sold; shop: GET /orders/{id}; customers: the carts"),
        _none("placed orders without exactly one mail",
              [i for i in placed if sent.get(i, 0) != 1], mails),
        _none("mails for orders that were not placed",
              [i for i, n in sent.items() if n and i not in placed], mails),
        _none("orders not ended after the drain", unended, orders_of),
        Invariant(
            "responses no correct shop gives",
            sum(recorder.unexpected.values()),
            0,
            "customers",
            ", ".join(f"{k}: {v}" for k, v in sorted(recorder.unexpected.items())),
        ),
    ]  # fmt: skip


def _none(name: str, offenders: Iterable[str], source: str, note: str = "") -> Invariant:
    """An invariant that holds when there are no `offenders`; the detail names a few."""
    found = sorted(offenders)
    named = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return Invariant(name, len(found), 0, source, "; ".join(t for t in (named, note) if t))


def recorder_order_ids(recorder: Recorder) -> set[str]:
    """Every order id a customer was given."""
    return {o for orders in recorder.orders_by_key.values() for o in orders}


def _ended(result: Audit, order: str) -> bool:
    return result.orders.get(order, {}).get("status") in ENDED_ORDER
