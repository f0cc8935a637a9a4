"""The reference shop over HTTP: a real uvicorn server on 127.0.0.1, real provider processes,
the store on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sagaway.shop._idempotency import IdempotencyKeys
from tests.processes import WorkerProcess
from tests.shopkit import Providers, ShopServer, wait_for, worker_env


@pytest.fixture(scope="module")
def providers(tmp_path_factory):
    running = Providers(tmp_path_factory.mktemp("providers"))
    yield running
    running.close()


@pytest.fixture(autouse=True)
def no_faults(providers):
    yield
    providers.faults("payment")
    providers.faults("mail", latency_ms=20)


@pytest.fixture
def shop(store_url, providers):
    providers.faults("mail", latency_ms=20)
    server = ShopServer(store_url, providers.config(payment_timeout=1.0))
    yield server
    server.close()


def test_the_screens_in_order_place_one_order_with_one_charge_and_one_mail(shop, providers):
    checkout = shop.checkout([{"sku": "tee", "qty": 2}])
    confirm_early = shop.http.post(f"/checkouts/{checkout}/confirm")
    assert confirm_early.status_code == 409 and "customer" in confirm_early.json()["detail"]
    shop.through_confirm(checkout)
    assert shop.http.get(f"/checkouts/{checkout}").json()["status"] == "confirmed"
    bought = shop.purchase(checkout, key=str(uuid.uuid4()))
    assert bought.status_code == 202, bought.text
    order = bought.json()["order"]
    assert bought.headers["location"] == f"/orders/{order}"
    assert shop.order_status(order, wait=20) == "placed"
    shown = shop.http.get(f"/checkouts/{checkout}").json()
    assert shown["status"] == "placed" and shown["orders"] == [order]
    assert shown["amount"] == 2 * 25_00
    assert providers.stats("payment")["charged_per_order"][order] == 1
    wait_for(lambda: providers.stats("mail")["sent_per_order"].get(order) == 1, what="the mail")
    sold = "SELECT sku, qty FROM shop_sold WHERE order_id = ?"
    rows = wait_for(lambda: shop.asgi.state.db.all(sold, (order,)), what="the stock group")
    assert [tuple(r) for r in rows] == [("tee", 2)]
    second = shop.purchase(checkout, key=str(uuid.uuid4()))
    assert second.status_code == 409 and "is placed" in second.json()["detail"]
    # The nightly settlement of the day after: this order, the amount captured for it.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    settled = shop.app.start("settlement", tick=tomorrow).result(timeout=30)
    assert (settled["orders"], settled["amount"]) == (1, 2 * 25_00)
    assert shop.asgi.state.db.one("SELECT settled_at FROM shop_orders WHERE id = ?", (order,))[0]


def test_bad_input_is_refused_naming_the_problem_and_stores_nothing(shop):
    for body, words in (
        ({"items": []}, "non-empty list"),
        ({"items": [{"sku": "sofa", "qty": 1}]}, "sku must be one of"),
        ({"items": [{"sku": "mug", "qty": 0}]}, "qty must be"),
    ):
        answer = shop.http.post("/checkouts", json=body)
        assert answer.status_code == 422 and words in answer.json()["detail"]
        assert answer.headers["content-type"] == "application/problem+json"
    assert shop.asgi.state.db.one("SELECT COUNT(*) FROM shop_checkouts")[0] == 0
    assert shop.app.runs(saga="checkout") == []
    checkout = shop.checkout()
    bad = shop.http.put(f"/checkouts/{checkout}/customer", json={"email": "nobody"})
    assert bad.status_code == 422 and "email" in bad.json()["detail"]
    assert shop.http.get(f"/checkouts/{checkout}").json()["status"] == "open"
    assert shop.http.get("/checkouts/co_missing").status_code == 404
    for path in ("/orders/ord_x?wait=lots", "/no-such-route"):
        answer = shop.http.get(path)
        assert answer.status_code in (404, 422)
        assert answer.headers["content-type"] == "application/problem+json", path


def test_a_hundred_identical_purchases_with_one_key_make_one_order_and_one_charge(shop, providers):
    checkout = shop.checkout()
    shop.through_confirm(checkout)
    key = str(uuid.uuid4())
    clients = [httpx.Client(base_url=shop.url, timeout=30) for _ in range(10)]
    gate = threading.Barrier(10)

    def click(i: int) -> httpx.Response:
        client = clients[i % 10]
        if i < 10:
            gate.wait()
        return client.post(
            f"/checkouts/{checkout}/purchase",
            json={"card": "tok_visa"},
            headers={"Idempotency-Key": key},
        )

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(click, range(100)))
    for client in clients:
        client.close()
    statuses = {a.status_code for a in answers}
    assert statuses <= {202, 409}, [a.text for a in answers if a.status_code not in (202, 409)]
    accepted = [a for a in answers if a.status_code == 202]
    assert accepted and len({a.text for a in accepted}) == 1
    order = accepted[0].json()["order"]
    assert sum(1 for a in accepted if a.headers.get("idempotency-replayed") == "true") == (
        len(accepted) - 1
    )
    assert shop.order_status(order, wait=20) == "placed"
    assert shop.http.get(f"/checkouts/{checkout}").json()["orders"] == [order]
    assert providers.stats("payment")["charged_per_order"][order] == 1
    replay = shop.purchase(checkout, key=key)
    assert replay.status_code == 202 and replay.json()["order"] == order
    assert replay.headers["idempotency-replayed"] == "true"
    other = shop.purchase(checkout, key=key, card="tok_other")
    assert other.status_code == 422 and "another request" in other.json()["detail"]
    huge = shop.http.post(
        f"/checkouts/{checkout}/purchase",
        content=b'{"card": "' + b"x" * 70_000 + b'"}',
        headers={"Idempotency-Key": "huge"},
    )
    assert huge.status_code == 413 and "KiB" in huge.json()["detail"]
    missing = shop.http.post(f"/checkouts/{checkout}/purchase", json={"card": "tok_visa"})
    assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["detail"]


def test_a_key_still_in_flight_elsewhere_gets_409_then_its_response(shop):
    checkout = shop.checkout()
    path = f"/checkouts/{checkout}/confirm"
    keys = IdempotencyKeys(shop.asgi.state.db)
    # Another shop process has claimed the key and is handling the request right now.
    import hashlib

    fingerprint = hashlib.sha256(f"POST {path}\n".encode()).hexdigest()
    assert keys.claim("confirm-1", fingerprint, path).owned
    busy = shop.http.post(path, headers={"Idempotency-Key": "confirm-1"})
    assert busy.status_code == 409 and "still being handled" in busy.json()["detail"]
    body = json.dumps({"id": checkout, "status": "confirmed"}).encode()
    keys.complete("confirm-1", 200, [(b"content-type", b"application/json")], body)
    done = shop.http.post(path, headers={"Idempotency-Key": "confirm-1"})
    assert done.status_code == 200 and done.json() == {"id": checkout, "status": "confirmed"}
    assert done.headers["idempotency-replayed"] == "true"
    # The replay did not run the route: the checkout never got its customer details.
    assert shop.http.get(f"/checkouts/{checkout}").json()["status"] == "open"


def test_an_error_answer_frees_the_key_so_the_retry_runs_anew(shop):
    checkout = shop.checkout()
    early = shop.purchase(checkout, key="buy-early")
    assert early.status_code == 409 and "confirm first" in early.json()["detail"]
    shop.through_confirm(checkout)
    retried = shop.purchase(checkout, key="buy-early")
    assert retried.status_code == 202 and "idempotency-replayed" not in retried.headers


def test_keys_expire_after_a_day_and_are_pruned(shop):
    db = shop.asgi.state.db
    keys = IdempotencyKeys(db)
    assert keys.claim("old-key", "f1", "/x").owned
    keys.complete("old-key", 201, [], b"{}")
    assert not keys.claim("old-key", "f1", "/x").owned  # a replay while it is fresh
    with db.transaction() as tx:
        tx.execute("UPDATE shop_idempotency SET created_at = created_at - 90000")
    assert keys.claim("old-key", "f2", "/x").owned  # expired: a new request, not a 422
    with db.transaction() as tx:
        tx.execute("UPDATE shop_idempotency SET created_at = created_at - 90000")
    assert keys.prune() == 1
    assert db.one("SELECT COUNT(*) FROM shop_idempotency")[0] == 0
    # A key whose first request has been in flight for over a minute: its process died.
    assert keys.claim("orphan", "f3", "/x").owned
    assert keys.claim("orphan", "f3", "/x").status == 409
    with db.transaction() as tx:
        tx.execute("UPDATE shop_idempotency SET created_at = created_at - 61")
    assert keys.claim("orphan", "f3", "/x").owned


def test_a_customer_who_never_comes_back_gets_the_stock_released(tmp_path, providers):
    shop = ShopServer(f"sqlite:///{tmp_path}/shop.db", providers.config(customer_timeout=1.0))
    try:
        before = providers.stats("inventory")["reserved"]["cap"]
        checkout = shop.checkout([{"sku": "cap", "qty": 4}])
        wait_for(
            lambda: providers.stats("inventory")["reserved"]["cap"] == before + 4, what="the hold"
        )
        wait_for(
            lambda: shop.http.get(f"/checkouts/{checkout}").json()["status"] == "compensated",
            what="the timeout to compensate",
        )
        assert providers.stats("inventory")["reserved"]["cap"] == before
        late = shop.http.put(
            f"/checkouts/{checkout}/customer", json={"email": "a@example.com", "address": "x"}
        )
        assert late.status_code == 409 and "compensated" in late.json()["detail"]
    finally:
        shop.close()


def test_a_checkout_resumes_after_its_worker_is_killed_mid_purchase(tmp_path, providers):
    db = f"sqlite:///{tmp_path}/shop.db"
    shop = ShopServer(db, providers.config(), workers=False)
    env = worker_env(providers, db)
    first = WorkerProcess(db, tmp_path / "w1.log", target="sagaway.shop.flows:app", env_extra=env)
    try:
        checkout = shop.checkout()
        shop.through_confirm(checkout)
        providers.faults("payment", latency_ms=1500)  # the charge is under way when it dies
        order = shop.purchase(checkout, key="kill-1").json()["order"]
        # open_order recorded: the charge is next, and takes 1.5 s at the provider.
        wait_for(lambda: "open_order" in [s.name for s in shop.app.get(_run(shop, checkout)).steps])
        first.kill()
        providers.faults("payment")
        second = WorkerProcess(
            db, tmp_path / "w2.log", target="sagaway.shop.flows:app", env_extra=env
        )
        try:
            assert shop.order_status(order, wait=25) == "placed"
        finally:
            second.stop()
        assert providers.stats("payment")["charged_per_order"][order] == 1
    finally:
        first.stop()
        shop.close()


def _run(shop: ShopServer, checkout: str) -> str:
    return str(
        shop.asgi.state.db.one("SELECT run_id FROM shop_checkouts WHERE id = ?", (checkout,))[0]
    )


def test_orders_placed_during_a_payment_outage_park_and_complete_after_it(tmp_path, providers):
    shop = ShopServer(f"sqlite:///{tmp_path}/shop.db", providers.config(payment_timeout=0.5))
    try:
        checkouts = [shop.checkout() for _ in range(8)]
        for checkout in checkouts:
            shop.through_confirm(checkout)
        providers.faults("payment", mode="outage")
        orders = [shop.purchase(c, key=f"outage-{c}").json()["order"] for c in checkouts]
        wait_for(
            lambda: any(
                e.kind == "parked" for c in checkouts for e in shop.app.get(_run(shop, c)).events
            ),
            what="a purchase to park at the open breaker",
        )
        assert all(shop.order_status(o) == "pending" for o in orders)
        providers.faults("payment")
        statuses = [shop.order_status(o, wait=25) for o in orders]
        assert statuses == ["placed"] * len(orders)
        charged = providers.stats("payment")["charged_per_order"]
        assert [charged[o] for o in orders] == [1] * len(orders)
        assert shop.app.runs(status="failed") == []
    finally:
        shop.close()


def test_a_payment_quota_parks_purchases_until_retry_after_and_each_is_charged_once(
    tmp_path, providers
):
    shop = ShopServer(f"sqlite:///{tmp_path}/shop.db", providers.config())
    try:
        checkouts = [shop.checkout() for _ in range(4)]
        for checkout in checkouts:
            shop.through_confirm(checkout)
        providers.faults("payment", mode="quota", quota_per_s=2)
        orders = [shop.purchase(c, key=f"quota-{c}").json()["order"] for c in checkouts]
        assert [shop.order_status(o, wait=25) for o in orders] == ["placed"] * 4
        charged = providers.stats("payment")["charged_per_order"]
        assert [charged[o] for o in orders] == [1] * 4
        runs = [shop.app.get(_run(shop, c)) for c in checkouts]
        assert any(e.kind == "parked" for run in runs for e in run.events)  # a 429 parked one
    finally:
        shop.close()


def test_a_declined_card_compensates_the_order_and_releases_the_stock(tmp_path, providers):
    shop = ShopServer(f"sqlite:///{tmp_path}/shop.db", providers.config())
    try:
        before = providers.stats("inventory")
        checkout = shop.checkout([{"sku": "tee", "qty": 3}])
        shop.through_confirm(checkout)
        order = shop.purchase(checkout, key="declined-1", card="tok_declined").json()["order"]
        assert shop.order_status(order, wait=20) == "compensated"
        wait_for(
            lambda: shop.http.get(f"/checkouts/{checkout}").json()["status"] == "compensated",
            what="the run to end compensated",
        )
        after = providers.stats("inventory")
        assert after["available"]["tee"] == before["available"]["tee"]
        assert after["reserved"]["tee"] == before["reserved"]["tee"]
        assert order not in providers.stats("payment")["charged_per_order"]
        assert order not in providers.stats("mail")["sent_per_order"]
    finally:
        shop.close()
