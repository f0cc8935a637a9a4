"""The shop's edge over real HTTP on 127.0.0.1: how fast a shed request gets its 503 beside
the requests the shop handles (a new checkout, a catalog read, a replayed purchase).

The shop runs on uvicorn in this process with a fixed in-flight limit, on SQLite, with its
providers in threads and no worker (so an order stays pending and long polls on it hold
their places). Times are client-side, one keep-alive connection, one request at a time.

    python bench/shop_edge.py                  # 300 requests of each kind
    python bench/shop_edge.py --requests 1000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid

import httpx
import uvicorn

from sagaway.shop.flows import ShopConfig, build_app
from sagaway.shop.providers import Inventory, Mail, Payment, serve
from sagaway.shop.service import ShopSettings, create_shop

LIMIT = 8


def _providers(folder: str) -> dict[str, str]:
    urls = {}
    for kind, provider in (
        ("payment", Payment(f"{folder}/payment.db")),
        ("inventory", Inventory(f"{folder}/inventory.db", {"mug": 10**6})),
        ("mail", Mail(f"{folder}/mail.db")),
    ):
        server = serve(provider, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        urls[f"{kind}_url"] = f"http://127.0.0.1:{server.server_address[1]}"
    return urls


def _timed(n: int, call) -> list[float]:
    took = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1000)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    n = parser.parse_args().requests
    folder = tempfile.mkdtemp()
    urls = _providers(folder)
    app = build_app(f"sqlite:///{folder}/shop.db", ShopConfig(**urls))
    shop = create_shop(app, ShopSettings(max_in_flight=LIMIT, inventory_url=urls["inventory_url"]))
    server = uvicorn.Server(uvicorn.Config(shop, port=0, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    http = httpx.Client(base_url=url, timeout=30)
    items = {"items": [{"sku": "mug", "qty": 1}]}
    checkout = http.post("/checkouts", json=items).json()["id"]
    http.put(f"/checkouts/{checkout}/customer", json={"email": "a@example.com", "address": "x"})
    http.post(f"/checkouts/{checkout}/confirm")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    order = http.post(f"/checkouts/{checkout}/purchase", json={"card": "tok_visa"}, headers=key)
    order_id = order.json()["order"]

    def replay() -> None:
        http.post(f"/checkouts/{checkout}/purchase", json={"card": "tok_visa"}, headers=key)

    rows = [
        ("POST /checkouts (201)", _timed(n, lambda: http.post("/checkouts", json=items))),
        ("GET /catalog (200)", _timed(n, lambda: http.get("/catalog"))),
        ("purchase replayed (202)", _timed(n, replay)),
    ]
    holders = [
        threading.Thread(
            target=lambda: httpx.get(f"{url}/orders/{order_id}", params={"wait": 30}, timeout=60)
        )
        for _ in range(LIMIT)
    ]
    for holder in holders:
        holder.start()
    while shop.state.edge.stats()["in_flight"] < LIMIT:
        time.sleep(0.01)

    def shed() -> None:
        assert http.post("/checkouts", json=items).status_code == 503

    rows.append(("POST /checkouts shed (503)", _timed(n, shed)))
    print(f"{n} requests each, limit {LIMIT}, SQLite, client-side ms")
    print(f"{'request':<28}{'p50':>8}{'p99':>8}{'max':>8}")
    for name, took in rows:
        p99 = statistics.quantiles(took, n=100)[98]
        print(f"{name:<28}{statistics.median(took):>8.2f}{p99:>8.2f}{max(took):>8.2f}")
    server.should_exit = True


if __name__ == "__main__":
    main()
