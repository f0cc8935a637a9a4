"""The shop's providers as real processes: payment never charges twice for one key, inventory
conserves stock, mail is slow, and the fault controls do what they say."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.shopkit import Providers


@pytest.fixture(scope="module")
def providers(tmp_path_factory):
    running = Providers(tmp_path_factory.mktemp("providers"), stock="mug=5,tee=100,cap=100")
    yield running
    running.close()


@pytest.fixture(autouse=True)
def no_faults(providers):
    yield
    for kind in ("payment", "inventory"):
        providers.faults(kind)
    providers.faults("mail", latency_ms=200)


def post(providers, kind, path, body=None, key=None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return providers.http.post(f"{providers.urls[kind]}{path}", json=body, headers=headers)


def test_payment_takes_one_charge_per_idempotency_key(providers):
    body = {"order": "o-pay-1", "amount": 1200, "card": "tok_visa"}
    first = post(providers, "payment", "/charges", body, key="k-pay-1")
    again = post(providers, "payment", "/charges", body, key="k-pay-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and first.json()["status"] == "captured"
    other_body = post(providers, "payment", "/charges", {**body, "amount": 1}, key="k-pay-1")
    assert other_body.status_code == 422
    assert "another body" in other_body.json()["detail"]
    no_key = post(providers, "payment", "/charges", body)
    assert no_key.status_code == 400 and "Idempotency-Key" in no_key.json()["detail"]
    assert providers.stats("payment")["charged_per_order"]["o-pay-1"] == 1


def test_payment_refunds_idempotently_and_declines_the_declined_card(providers):
    body = {"order": "o-pay-2", "amount": 500, "card": "tok_visa"}
    charge = post(providers, "payment", "/charges", body, key="k-pay-2").json()
    for _ in range(2):
        refund = post(providers, "payment", f"/charges/{charge['id']}/refund")
        assert refund.status_code == 200 and refund.json()["status"] == "refunded"
    assert providers.stats("payment")["charged_per_order"]["o-pay-2"] == 0
    found = providers.http.get(f"{providers.urls['payment']}/charges", params={"order": "o-pay-2"})
    assert found.json()["charges"] == [{"id": charge["id"], "status": "refunded", "amount": 500}]
    declined = post(providers, "payment", "/charges", {**body, "card": "tok_declined"}, key="d")
    assert declined.status_code == 402
    assert declined.headers["content-type"] == "application/problem+json"


def test_inventory_conserves_stock_through_reserve_release_and_commit(providers):
    def conserved() -> dict:
        s = providers.stats("inventory")
        for sku, initial in s["initial"].items():
            assert initial == s["available"][sku] + s["reserved"][sku] + s["sold"][sku]
        return s

    items = [{"sku": "mug", "qty": 3}]
    held = post(providers, "inventory", "/reservations", {"checkout": "c1", "items": items}, "r1")
    assert held.status_code == 201
    assert conserved()["reserved"]["mug"] == 3
    short = post(providers, "inventory", "/reservations", {"checkout": "c2", "items": items}, "r2")
    assert short.status_code == 409 and "out of stock" in short.json()["detail"]
    hold = held.json()["id"]
    for _ in range(2):
        assert post(providers, "inventory", f"/reservations/{hold}/commit").status_code == 200
    assert post(providers, "inventory", f"/reservations/{hold}/release").status_code == 409
    s = conserved()
    assert (s["available"]["mug"], s["reserved"]["mug"], s["sold"]["mug"]) == (2, 0, 3)
    two = post(providers, "inventory", "/reservations", {"checkout": "c3", "items": items})
    assert two.status_code == 400  # no key
    bad = post(providers, "inventory", "/reservations", {"checkout": "c3", "items": []}, "r3")
    assert bad.status_code == 422
    again = post(providers, "inventory", "/reservations", {"checkout": "c1", "items": items}, "r1")
    assert again.json() == held.json()  # the first answer, though the stock changed since
    conserved()


def test_mail_is_slow_and_sends_once_per_key(providers):
    body = {"to": "ada@example.com", "order": "o-mail-1", "template": "order-placed"}
    started = time.monotonic()
    first = post(providers, "mail", "/mails", body, key="m1")
    assert time.monotonic() - started >= 0.2
    assert first.status_code == 202
    assert post(providers, "mail", "/mails", body, key="m1").json() == first.json()
    assert providers.stats("mail")["sent_per_order"]["o-mail-1"] == 1


def test_fault_controls_quota_outage_and_gray(providers):
    body = {"order": "o-fault", "amount": 100, "card": "tok_visa"}
    providers.faults("payment", mode="quota", quota_per_s=1)
    answers = [post(providers, "payment", "/charges", body, key=f"q{i}") for i in range(3)]
    assert [a.status_code for a in answers].count(429) >= 1
    assert all(a.headers["Retry-After"] == "1" for a in answers if a.status_code == 429)

    providers.faults("payment", mode="outage")
    with pytest.raises(httpx.TransportError):
        post(providers, "payment", "/charges", body, key="out")
    with pytest.raises(httpx.TransportError):  # down: its health check goes unanswered too
        providers.http.get(f"{providers.urls['payment']}/health")

    settings = providers.faults("payment", mode="gray", hang_ms=1500)
    assert settings["timeout_rate"] == 1.0  # a gray mode without a rate hangs every call
    gray = httpx.Client(timeout=0.3)
    with pytest.raises(httpx.TimeoutException):
        url = f"{providers.urls['payment']}/charges"
        gray.post(url, json=body, headers={"Idempotency-Key": "g"})
    health = gray.get(f"{providers.urls['payment']}/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    gray.close()


def test_a_bad_fault_setting_is_refused_and_changes_nothing(providers):
    before = providers.faults("inventory", mode="latency", latency_ms=5)
    url = f"{providers.urls['inventory']}/_faults"
    for body, words in (
        ({"mode": "broken"}, "not one of"),
        ({"mode": "error", "error_rate": 2}, "error_rate must be"),
        ({"mode": "quota", "quota_per_s": 0}, "quota_per_s must be"),
        ({"mdoe": "ok"}, "unknown field"),
    ):
        answer = providers.http.put(url, json=body)
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
    assert providers.http.get(url).json() == before
