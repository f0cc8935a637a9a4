"""Every order the shop accepts ends: a purchase the shop took before the checkout's saga got
to its reservation is closed by the saga when the checkout unwinds instead of staying
pending. The screens are all sent before any worker runs, so the race is not left to timing."""

from __future__ import annotations

import pytest

from tests.shopkit import Providers, ShopServer, wait_for


@pytest.fixture(scope="module")
def sold_out(tmp_path_factory):
    running = Providers(tmp_path_factory.mktemp("sold-out"), stock="mug=0,tee=0,cap=5")
    yield running
    running.close()


def _accepted_before_any_worker(shop: ShopServer, sku: str, key: str) -> tuple[str, str]:
    """A checkout walked through every screen while no worker runs: (checkout, order)."""
    checkout = shop.checkout([{"sku": sku, "qty": 1}])
    shop.through_confirm(checkout)
    bought = shop.purchase(checkout, key=key)
    assert bought.status_code == 202, bought.text
    order = str(bought.json()["order"])
    assert shop.order_status(order) == "pending"
    return checkout, order


def _start_workers(shop: ShopServer) -> None:
    shop.app.launch()
    shop.workers = True  # close() shuts them down


def test_an_order_accepted_before_its_reservation_failed_ends_compensated(store_url, sold_out):
    shop = ShopServer(store_url, sold_out.config(), workers=False)
    try:
        checkout, order = _accepted_before_any_worker(shop, "mug", "sold-out-1")
        _start_workers(shop)
        assert shop.order_status(order, wait=20) == "compensated"
        wait_for(
            lambda: shop.http.get(f"/checkouts/{checkout}").json()["status"] == "compensated",
            what="the run to end compensated",
        )
        shown = shop.http.get(f"/checkouts/{checkout}").json()
        assert shown["orders"] == [order]
        again = shop.purchase(checkout, key="sold-out-2")
        assert again.status_code == 409 and "compensated" in again.json()["detail"]
        assert order not in sold_out.stats("payment")["charged_per_order"]
        assert sold_out.stats("inventory")["reserved"]["mug"] == 0
    finally:
        shop.close()


def test_a_purchase_after_the_checkout_was_closed_is_refused_and_stores_no_order(
    tmp_path, sold_out
):
    shop = ShopServer(f"sqlite:///{tmp_path}/shop.db", sold_out.config(), workers=False)
    try:
        checkout = shop.checkout([{"sku": "tee", "qty": 1}])
        shop.through_confirm(checkout)
        # What the saga's last compensation does: a purchase racing it must not get an order.
        with shop.asgi.state.db.transaction() as tx:
            tx.execute("UPDATE shop_checkouts SET closed = 1 WHERE id = ?", (checkout,))
        refused = shop.purchase(checkout, key="closed-1")
        assert refused.status_code == 409 and "start a new checkout" in refused.json()["detail"]
        assert shop.http.get(f"/checkouts/{checkout}").json()["orders"] == []
    finally:
        shop.close()


def test_an_order_of_a_checkout_cancelled_before_its_first_step_is_swept_closed(tmp_path, sold_out):
    shop = ShopServer(f"sqlite:///{tmp_path}/shop.db", sold_out.config(), workers=False)
    try:
        checkout, order = _accepted_before_any_worker(shop, "cap", "cancel-1")
        db = shop.asgi.state.db
        run = shop.app.cancel(
            db.one("SELECT run_id FROM shop_checkouts WHERE id = ?", (checkout,))[0]
        )
        _start_workers(shop)
        wait_for(
            lambda: shop.http.get(f"/checkouts/{checkout}").json()["status"] == "cancelled",
            what="the run to end cancelled",
        )
        assert [s.name for s in shop.app.get(run.id).steps] == []  # nothing to compensate
        assert "sweep_orders" in shop.app.schedules
        assert shop.app.start("sweep_orders").result(timeout=20) == 1
        assert shop.order_status(order) == "compensated"
        assert shop.app.start("sweep_orders").result(timeout=20) == 0
        assert sold_out.stats("inventory")["reserved"]["cap"] == 0
    finally:
        shop.close()
