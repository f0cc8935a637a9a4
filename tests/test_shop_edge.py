"""The shop's edge over real HTTP: shedding beyond the in-flight limit (catalog first), the
catalog's ETag, and access log lines that `sagaway slo report` reads."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid

import httpx
import pytest

from sagaway.observe.slo._alb import parse_line
from sagaway.shop.service import ShopSettings
from tests.shopkit import ROOT, Providers, ShopServer, wait_for


@pytest.fixture(scope="module")
def providers(tmp_path_factory):
    running = Providers(tmp_path_factory.mktemp("providers"), stock="mug=100,tee=100,cap=0")
    yield running
    running.close()


@pytest.fixture
def shop(tmp_path, providers):
    """A shop with a fixed limit of 4 and no workers: a purchased order stays pending, so a
    long poll on it is a slow request that holds its place in flight."""
    settings = ShopSettings(
        max_in_flight=4, log_dir=str(tmp_path / "logs"), inventory_url=providers.urls["inventory"]
    )
    server = ShopServer(f"sqlite:///{tmp_path}/shop.db", providers.config(), settings, False)
    yield server
    server.close()


def pending_order(shop: ShopServer) -> str:
    checkout = shop.checkout()
    shop.through_confirm(checkout)
    return str(shop.purchase(checkout, key=str(uuid.uuid4())).json()["order"])


class SlowRequests:
    """`n` long polls of `wait` seconds on a pending order, each on its own connection."""

    def __init__(self, shop: ShopServer, order: str, n: int, wait: float = 2.0) -> None:
        self.answers: list[httpx.Response] = []
        self.threads = [
            threading.Thread(target=self._poll, args=(shop.url, order, wait)) for _ in range(n)
        ]
        for thread in self.threads:
            thread.start()
        edge = shop.asgi.state.edge
        wait_for(lambda: edge.stats()["in_flight"] == n, what=f"{n} requests in flight")

    def _poll(self, url: str, order: str, wait: float) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            self.answers.append(client.get(f"/orders/{order}", params={"wait": wait}))

    def join(self) -> list[httpx.Response]:
        for thread in self.threads:
            thread.join(30)
        return self.answers


def shed_lines(shop: ShopServer) -> list:
    log = ROOT / shop.asgi.state.edge.log.path
    return [e for e in map(parse_line, log.read_text().splitlines()) if e.target_status is None]


def test_beyond_the_limit_requests_get_a_fast_503_while_admitted_ones_complete(shop):
    order = pending_order(shop)
    slow = SlowRequests(shop, order, n=4)
    refused = [
        shop.http.post("/checkouts", json={"items": [{"sku": "mug", "qty": 1}]}),
        shop.http.get(f"/checkouts/{order}"),
        shop.http.get("/catalog"),
    ]
    assert [r.status_code for r in refused] == [503, 503, 503]
    for answer in refused:
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["content-type"] == "application/problem+json"
    assert shop.http.get("/health").status_code == 200  # never shed
    admitted = slow.join()
    assert [a.status_code for a in admitted] == [200] * 4
    assert {a.json()["status"] for a in admitted} == {"pending"}
    # The shop's own measure of each refusal, from its arrival to its answer.
    lines = shed_lines(shop)
    assert len(lines) == 3
    assert all(e.request_processing_time < 0.05 for e in lines), lines
    stats = shop.http.get("/_shop/stats").json()
    assert stats["limit"] == 4 and stats["shed"] == 3
    assert stats["routes"]["GET /orders/{id}"] == {"200": 4}
    assert stats["shed_by_route"]["POST /checkouts"] == 1


def test_catalog_reads_are_shed_before_checkout_routes(shop):
    order = pending_order(shop)
    slow = SlowRequests(shop, order, n=2)  # half the limit: the catalog's share is full
    catalog = shop.http.get("/catalog")
    checkout = shop.http.post("/checkouts", json={"items": [{"sku": "tee", "qty": 1}]})
    assert catalog.status_code == 503
    assert checkout.status_code == 201
    slow.join()
    assert shop.http.get("/catalog").status_code == 200  # admitted again once they ended


def test_the_catalog_has_an_etag_and_answers_304_when_it_has_not_changed(shop):
    first = shop.http.get("/catalog")
    assert first.status_code == 200
    assert first.headers["cache-control"] == "public, max-age=5"
    etag = first.headers["etag"]
    stock = {item["sku"]: item["in_stock"] for item in first.json()["items"]}
    assert stock == {"mug": True, "tee": True, "cap": False}
    again = shop.http.get("/catalog", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    other = shop.http.get("/catalog", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.json() == first.json()


def test_sagaway_slo_report_reads_the_shops_access_log(shop, tmp_path):
    order = pending_order(shop)
    slow = SlowRequests(shop, order, n=4, wait=1.0)
    assert shop.http.get("/catalog").status_code == 503
    slow.join()
    shop.http.get("/checkouts/co_nothing")  # a 404: the client's error, not the shop's
    log = tmp_path / "logs" / "access.log"
    lines = log.read_text().splitlines()
    entries = [parse_line(line) for line in lines]
    assert {(e.method, e.path) for e in entries} >= {("GET", "/catalog"), ("POST", "/checkouts")}
    spec = tmp_path / "slo.yaml"
    spec.write_text(
        "service: shop\n"
        "slos:\n"
        "  - name: availability\n"
        "    objective: 99.9\n"
        "    window: 1h\n"
        "    min_requests: 0\n"
        "    indicator: {type: availability}\n"
    )
    report = subprocess.run(
        [sys.executable, "-m", "sagaway.cli", "slo", "report", "--config", str(spec),
         "--alb", str(log.parent), "--json", "--quarantine", str(tmp_path / "q.jsonl")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    result = json.loads(report.stdout)
    assert result["source"]["malformed"] == 0
    assert result["source"]["parsed"] == len(lines)
    (slo,) = result["slos"]
    assert slo["total"] == len(lines)
    assert slo["bad"] == 1  # the shed catalog read; the 404 is the client's


def test_access_log_lines_stay_parseable_whatever_the_client_sends():
    from sagaway.shop._access_log import Exchange, alb_line

    exchange = Exchange(
        started=1_800_000_000.25,
        ended=1_800_000_000.5,
        method="GET",
        host='evil host"\n',
        path='/catalog?q="a b"\u00e9',
        http_version="1.1",
        client="127.0.0.1:5000",
        target="127.0.0.1:8000",
        user_agent='agent "quoted"\x00\tx',
        status=200,
        received_bytes=0,
        sent_bytes=10,
    )
    entry = parse_line(alb_line(exchange))
    assert (entry.method, entry.host, entry.elb_status, entry.target_status) == (
        "GET",
        "evilhost'",
        200,
        200,
    )
    assert entry.path.startswith("/catalog?q=") and " " not in entry.path
    assert entry.target_processing_time == 0.25 and '"' not in entry["user_agent"]
    shed = parse_line(alb_line(Exchange(**{**exchange.__dict__, "status": 503, "shed": True})))
    assert (shed.target_status, shed.target_processing_time, shed.elb_status) == (None, -1, 503)


def _lag_at(now: list[float], *samples: tuple[float, float]):
    from sagaway.shop._lag import LoopLag

    lag = LoopLag(every=0.01, window=0.1, clock=lambda: now[0])
    for at, late in samples:
        lag.record(at, late)
    return lag


def test_loop_lag_is_the_standing_delay_not_a_burst():
    now = [10.0]
    # One late wake-up among prompt ones is a burst the loop cleared: no standing lag.
    assert _lag_at(now, (9.95, 0.002), (9.97, 0.3), (9.99, 0.001)).standing() == 0.001
    # Late at every wake-up over the window: a standing queue, its least lateness.
    assert _lag_at(now, (9.95, 0.08), (9.97, 0.3), (9.99, 0.05)).standing() == 0.05
    # Samples older than the window no longer count.
    assert _lag_at(now, (9.5, 0.4), (9.98, 0.01)).standing() == 0.01
    assert _lag_at(now).standing() == 0.0
    with pytest.raises(ValueError, match="every"):
        _lag_at(now).__class__(every=0.2, window=0.1)


def test_a_queueing_loop_sheds_new_customers_first_then_every_request():
    import asyncio

    from sagaway.shop._edge import Edge

    now = [10.0]
    answers: list[int] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def status(edge: Edge, method: str, path: str) -> int:
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": []}
        await edge.handle(app, scope, receive, send)
        start = sent[0]
        if start["status"] == 503:
            assert (b"retry-after", b"1") in start["headers"]
        return int(start["status"])

    routes = [
        ("GET", "/catalog"),
        ("POST", "/checkouts"),
        ("POST", "/checkouts/co_1/confirm"),
        ("POST", "/checkouts/co_1/purchase"),
        ("GET", "/health"),
    ]

    async def statuses(late: float) -> list[int]:
        lag = _lag_at(now, (9.95, late), (9.99, late))
        lag.ensure_running = lambda: None  # the samples above stand for the sampler's
        edge = Edge(ShopSettings().limit(), None, lag, queue_target=0.025)
        alone = await status(edge, "POST", "/checkouts/co_1/confirm")
        assert alone == 200  # nothing else in flight: the lag is not the shop's own
        assert edge.limit is not None
        held = [edge.limit.try_acquire() for _ in range(2)]  # the shop's own work in flight
        found = [await status(edge, m, p) for m, p in routes]
        for permit in held:
            assert permit is not None
            permit.ignore()
        answers.append(edge.stats()["shed_queueing"])
        return found

    assert asyncio.run(statuses(0.01)) == [200, 200, 200, 200, 200]
    assert asyncio.run(statuses(0.05)) == [503, 503, 200, 200, 200]
    assert asyncio.run(statuses(0.2)) == [503, 503, 503, 503, 200]
    assert answers == [0, 2, 4]


def test_only_the_adaptive_limit_sheds_on_the_loops_lag():
    assert ShopSettings().loop_lag() is not None
    assert ShopSettings(max_in_flight=8).loop_lag() is None
    assert ShopSettings(shedding=False).loop_lag() is None
    assert ShopSettings(queue_target=None).loop_lag() is None
