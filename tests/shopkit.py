"""The reference shop for tests: its providers as real processes, the HTTP service on a real
uvicorn server on 127.0.0.1 (in a thread of the test process), and a client."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from sagaway.shop.flows import ShopConfig, build_app
from sagaway.shop.service import ShopSettings, create_shop

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("payment", "inventory", "mail")


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll `condition` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


class Providers:
    """payment, inventory and mail as child processes on free ports, files in `folder`."""

    def __init__(self, folder: Path, stock: str = "mug=1000,tee=1000,cap=1000") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.urls: dict[str, str] = {}
        try:
            for kind in KINDS:
                extra = ["--stock", stock] if kind == "inventory" else []
                self.processes[kind] = subprocess.Popen(
                    [sys.executable, "-m", "sagaway.shop.providers", kind, "--port", "0",
                     "--db", str(folder / f"{kind}.db"), *extra],
                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )  # fmt: skip
            for kind, process in self.processes.items():
                self.urls[kind] = self._listening(kind, process)
        except BaseException:
            self.close()
            raise
        self.http = httpx.Client(timeout=10)

    @staticmethod
    def _listening(kind: str, process: subprocess.Popen) -> str:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if select.select([process.stdout], [], [], 0.1)[0]:
                line = process.stdout.readline().decode()
                if line.startswith("listening on "):
                    return line.split("listening on ", 1)[1].strip()
                if not line:
                    break
        raise RuntimeError(f"the {kind} provider did not start")

    def faults(self, kind: str, **settings: Any) -> dict:
        """PUT /_faults at one provider."""
        answer = self.http.put(f"{self.urls[kind]}/_faults", json=settings)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stats(self, kind: str) -> dict:
        """GET /_stats of one provider."""
        return self.http.get(f"{self.urls[kind]}/_stats").json()

    def config(self, **overrides: Any) -> ShopConfig:
        """A ShopConfig pointing at these providers."""
        urls = {f"{kind}_url": url for kind, url in self.urls.items()}
        return ShopConfig(**{**urls, **overrides})

    def env(self) -> dict[str, str]:
        """The environment variables a worker process needs to find them."""
        return {f"SAGAWAY_SHOP_{kind.upper()}_URL": url for kind, url in self.urls.items()}

    def close(self) -> None:
        """Stop the processes."""
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()


class ShopServer:
    """The shop's App on `db_url` and its HTTP service on a uvicorn server on 127.0.0.1;
    `workers=True` also runs the App's workers in this process."""

    def __init__(
        self,
        db_url: str,
        config: ShopConfig,
        settings: ShopSettings | None = None,
        workers: bool = True,
    ) -> None:
        self.app = build_app(db_url, config)
        self.asgi = create_shop(self.app, settings or ShopSettings(shedding=False))
        if workers:
            self.app.launch()
        self.workers = workers
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.asgi, host="127.0.0.1", port=0, log_level="warning", access_log=False
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, what="uvicorn to start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def checkout(self, items: list[dict] | None = None) -> str:
        """A new checkout's id."""
        answer = self.http.post("/checkouts", json={"items": items or [{"sku": "mug", "qty": 1}]})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def through_confirm(self, checkout_id: str) -> None:
        """The customer and confirm screens."""
        customer = {"email": "ada@example.com", "address": "1 Loop Road"}
        answer = self.http.put(f"/checkouts/{checkout_id}/customer", json=customer)
        assert answer.status_code == 200, answer.text
        answer = self.http.post(f"/checkouts/{checkout_id}/confirm")
        assert answer.status_code == 200, answer.text

    def purchase(self, checkout_id: str, key: str, card: str = "tok_visa") -> httpx.Response:
        """POST the purchase screen with an Idempotency-Key."""
        return self.http.post(
            f"/checkouts/{checkout_id}/purchase",
            json={"card": card},
            headers={"Idempotency-Key": key},
        )

    def order_status(self, order_id: str, wait: float = 0.0) -> str:
        """The order's status (long-polling up to `wait` seconds while it is pending)."""
        answer = self.http.get(f"/orders/{order_id}", params={"wait": wait} if wait else None)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["status"])

    def close(self) -> None:
        """Stop the server and the App."""
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.asgi.state.db.close()
        if self.workers:
            self.app.shutdown()
        self.app.close()


def worker_env(providers: Providers, db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `sagaway worker sagaway.shop.flows:app` process."""
    return {**os.environ, **providers.env(), "SAGAWAY_DB": db_url, **extra}
