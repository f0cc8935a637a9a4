"""The sale's HTTP client beside httpx: CPU per request against a trivial server.

A uvicorn server with a one-line ASGI app runs in a child process on 127.0.0.1; in this
process `--requests` POSTs with a small JSON body and an `Idempotency-Key` are sent,
`--concurrency` at a time, over 512 keep-alive connections, first by httpx's AsyncClient
(as the sale sent them before) then by `sagaway.shop.sale._wire.WireClient`. The table shows
each client's rate, its CPU time per request (getrusage of this process) and latency.

    python bench/sale_client.py
    python bench/sale_client.py --requests 4000 --concurrency 400
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from sagaway.observe.metrics._series import percentile
from sagaway.shop.sale._wire import WireClient

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})
"""


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


async def _measure(send: Callable[[], Awaitable[Any]], n: int, at_once: int) -> tuple[float, ...]:
    gate = asyncio.Semaphore(at_once)
    took: list[float] = []

    async def one() -> None:
        async with gate:
            began = time.monotonic()
            await send()
            took.append(time.monotonic() - began)

    await asyncio.gather(*(one() for _ in range(at_once)))  # open the connections
    took.clear()
    cpu, wall = _cpu(), time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu, wall = _cpu() - cpu, time.monotonic() - wall
    return n / wall, cpu / n, percentile(took, 50), percentile(took, 99)


async def _both(url: str, n: int, at_once: int) -> dict[str, tuple[float, ...]]:
    body, headers = {"items": [{"sku": "mug", "qty": 1}]}, {"Idempotency-Key": "k-1"}
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        rows = {
            "httpx": await _measure(
                lambda: client.post("/x", json=body, headers=headers), n, at_once
            )
        }
    wire = WireClient(url)
    rows["sale's client"] = await _measure(
        lambda: wire.request("POST", "/x", json=body, headers=headers), n, at_once
    )
    await wire.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=400)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = os.path.dirname(os.path.abspath(__file__))
    server = subprocess.Popen(
        [sys.executable, "-c", APP + f"\nimport uvicorn\nuvicorn.run(app, host='127.0.0.1', "
         f"port={port}, log_level='warning', access_log=False)"],
        cwd=folder,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start within 20 s") from None
                time.sleep(0.1)
        rows = asyncio.run(_both(f"http://127.0.0.1:{port}", args.requests, args.concurrency))
    finally:
        server.kill()
        server.wait()
    print(
        f"{args.requests} POSTs, {args.concurrency} at once, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(f"{'client':<16}{'req/s':>8}{'CPU/req':>10}{'p50':>9}{'p99':>9}")
    for name, (rate, cpu, p50, p99) in rows.items():
        print(f"{name:<16}{rate:>8,.0f}{cpu * 1e3:>8.2f}ms{p50 * 1e3:>7.0f}ms{p99 * 1e3:>7.0f}ms")


if __name__ == "__main__":
    main()
