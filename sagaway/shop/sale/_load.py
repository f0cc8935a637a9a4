"""The sale's customers: open-loop arrivals and the walk each one takes through the shop.

Arrivals are a Poisson process at the phase's rate, started whatever the shop's state, so that
an overloaded shop sees its overload (a closed loop would slow down with it). Each customer
reads the catalog, creates a checkout, gives their details, confirms and purchases, every
state-changing request with an `Idempotency-Key` kept across its own retries. A 503 is retried
after its `Retry-After` (bounded); a 409 (the same key still in flight) a moment later.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from sagaway.shop.sale._plan import Phase
from sagaway.shop.sale._wire import Answer, WireClient

__all__ = ["ROUTES", "Customers", "Recorder", "Sample"]

# The routes as the report names them; a request's path is mapped to one of these.
ROUTES = (
    "GET /catalog",
    "POST /checkouts",
    "PUT /checkouts/{id}/customer",
    "POST /checkouts/{id}/confirm",
    "POST /checkouts/{id}/purchase",
)
MAX_TRIES = 6  # tries of one request before the customer gives up
RETRY_AFTER_CAP = 3.0  # seconds: a customer waits no longer than this for one retry
IN_FLIGHT_PAUSE = 0.2  # seconds before asking again about a key still in flight
MAX_CUSTOMERS = 3000  # customers walking at once; arrivals beyond are counted, not sent
CONNECTIONS = 512  # requests in flight at once: the generator's connections to the shop


@dataclass(frozen=True)
class Sample:
    """One response as the customer saw it: when it came back (monotonic seconds since the
    start of the load), in which phase, for which route, its status (0: no response), and how
    long it took in seconds."""

    at: float
    phase: str
    route: str
    status: int
    latency: float


@dataclass
class Recorder:
    """Everything the customers saw, for the progress display and the report."""

    started: float = field(default_factory=time.monotonic)
    phase: str = ""
    samples: list[Sample] = field(default_factory=list)
    recent: deque[Sample] = field(default_factory=lambda: deque(maxlen=20_000))
    arrivals: int = 0
    turned_away: int = 0
    completed: int = 0
    gave_up: int = 0
    out_of_stock: int = 0
    # purchase Idempotency-Key -> every order id a response with that key carried
    orders_by_key: dict[str, set[str]] = field(default_factory=dict)
    # purchase Idempotency-Key -> the phase in which its first order came back
    accepted_in: dict[str, str] = field(default_factory=dict)
    # checkout id -> the order ids its purchases returned
    orders_by_checkout: dict[str, set[str]] = field(default_factory=dict)
    # checkout id -> units in its cart
    units_by_checkout: dict[str, int] = field(default_factory=dict)
    resubmissions: int = 0
    double_clicks: int = 0
    replayed: int = 0
    unexpected: dict[str, int] = field(default_factory=dict)
    # (phase, seconds) the event loop woke up late: the generator's own delay, which the
    # latencies it measures include
    lags: list[tuple[str, float]] = field(default_factory=list)
    # seconds each request waited for one of the generator's connections before it was sent
    queued: list[float] = field(default_factory=list)

    def now(self) -> float:
        """Seconds since the load started."""
        return time.monotonic() - self.started

    def record(self, route: str, status: int, latency: float) -> None:
        """Keep one response."""
        sample = Sample(self.now(), self.phase, route, status, latency)
        self.samples.append(sample)
        self.recent.append(sample)

    def order(self, key: str, checkout: str, order: str) -> None:
        """A purchase with `key` for `checkout` was answered with `order`."""
        self.accepted_in.setdefault(key, self.phase)
        self.orders_by_key.setdefault(key, set()).add(order)
        self.orders_by_checkout.setdefault(checkout, set()).add(order)

    def surprise(self, what: str) -> None:
        """Count a response no correct shop gives (reported, and an invariant)."""
        self.unexpected[what] = self.unexpected.get(what, 0) + 1

    async def watch_lag(self, stop: asyncio.Event, every: float = 0.1) -> None:
        """Measure how late the event loop wakes up, until `stop` is set."""
        while not stop.is_set():
            began = time.monotonic()
            await asyncio.sleep(every)
            self.lags.append((self.phase, time.monotonic() - began - every))

    def window(self, seconds: float) -> list[Sample]:
        """The responses of the last `seconds`."""
        since = self.now() - seconds
        return [s for s in self.recent if s.at >= since]


class GaveUp(Exception):
    """A customer stopped walking: too many refusals, or the shop said no for good."""


@dataclass
class Customers:
    """Sends customers to the shop at `base_url` and records what they see in `recorder`."""

    client: WireClient | httpx.AsyncClient
    recorder: Recorder
    rng: random.Random
    catalog_etag: str | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Requests beyond CONNECTIONS wait here, not in the HTTP client's pool, whose queue costs
    # time in proportion to its length on every request (quadratic under a spike).
    sending: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONNECTIONS))

    async def run_phase(self, phase: Phase) -> None:
        """Start customers at the phase's rate until it ends (not waiting for them). Arrivals
        are due at fixed times from the phase's start: when the event loop falls behind, the
        ones due meanwhile all start at once, and the phase still ends on time."""
        start = time.monotonic()
        end = start + phase.seconds
        due = start + self.rng.expovariate(phase.rate)
        while due < end:
            now = time.monotonic()
            while due <= now and due < end:
                self._arrive(phase)
                due += self.rng.expovariate(phase.rate)
            await asyncio.sleep(max(0.0, min(due, end) - time.monotonic()))
        await asyncio.sleep(max(0.0, end - time.monotonic()))

    def _arrive(self, phase: Phase) -> None:
        self.recorder.arrivals += 1
        if len(self.tasks) >= MAX_CUSTOMERS:
            self.recorder.turned_away += 1
            return
        task = asyncio.create_task(self.walk(phase))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def finish(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the walking customers; cancel the rest and return
        how many were cancelled."""
        pending = set(self.tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    async def walk(self, phase: Phase) -> None:
        """One customer, screen by screen."""
        rec = self.recorder
        try:
            items = await self._choose_items()
            if not items:
                rec.out_of_stock += 1
                return
            made = await self._send("POST", "/checkouts", "POST /checkouts", {"items": items})
            checkout = str(made["id"])
            rec.units_by_checkout[checkout] = sum(i["qty"] for i in items)
            base = f"/checkouts/{checkout}"
            details = {"email": f"{checkout}@example.com", "address": "1 Market Street"}
            await self._send("PUT", f"{base}/customer", ROUTES[2], details)
            await self._send("POST", f"{base}/confirm", ROUTES[3], {})
            key = f"purchase-{uuid.uuid4()}"  # unique across sales: keys live 24 h
            body = {"card": "tok_visa"}
            path = f"{base}/purchase"
            if self.rng.random() < phase.double_click_share:
                rec.double_clicks += 1
                answers = await asyncio.gather(
                    self._send("POST", path, ROUTES[4], body, key=key),
                    self._send("POST", path, ROUTES[4], body, key=key),
                    return_exceptions=True,
                )
                bought = [a for a in answers if isinstance(a, dict)]
                if not bought:
                    raise answers[0] if isinstance(answers[0], BaseException) else GaveUp()
            else:
                bought = [await self._send("POST", path, ROUTES[4], body, key=key)]
            if self.rng.random() < phase.duplicate_share:
                rec.resubmissions += 1
                bought.append(await self._send("POST", path, ROUTES[4], body, key=key))
            for answer in bought:
                if "order" not in answer:
                    rec.surprise("purchase accepted without an order id")
                    continue
                rec.order(key, checkout, str(answer["order"]))
            rec.completed += 1
        except GaveUp:
            rec.gave_up += 1

    async def _choose_items(self) -> list[dict[str, Any]]:
        headers = {}
        if self.catalog_etag is not None and self.rng.random() < 0.5:
            headers["If-None-Match"] = self.catalog_etag
        response = await self._request("GET", "/catalog", ROUTES[0], None, headers)
        if response.status_code == 304:
            headers = {}
            response = await self._request("GET", "/catalog", ROUTES[0], None, headers)
        if response.status_code != 200:
            raise GaveUp()
        self.catalog_etag = response.headers.get("ETag", self.catalog_etag)
        items = [i for i in response.json().get("items", []) if i.get("in_stock", 0) > 0]
        picked = self.rng.sample(items, k=min(len(items), self.rng.choice((1, 1, 2))))
        return [{"sku": i["sku"], "qty": 1} for i in picked]

    async def _send(
        self,
        method: str,
        path: str,
        route: str,
        body: dict[str, Any],
        key: str | None = None,
    ) -> dict[str, Any]:
        """A state-changing request with an Idempotency-Key (the same one on every retry);
        the JSON body of its 2xx answer. Raises GaveUp."""
        headers = {"Idempotency-Key": key or f"k-{uuid.uuid4()}"}
        response = await self._request(method, path, route, body, headers)
        if response.headers.get("Idempotency-Replayed") == "true":
            self.recorder.replayed += 1
        if response.status_code == 409 and route == ROUTES[1]:
            self.recorder.surprise("409 creating a checkout")
        if response.status_code == 409 and route == ROUTES[4]:
            # Out of stock (the inventory said no) or the purchase failed for good: the
            # customer gives up; the saga compensates.
            raise GaveUp()
        if response.status_code == 422:
            self.recorder.surprise(f"422 on {route} for a key sent with the same body")
            raise GaveUp()
        if not 200 <= response.status_code < 300:
            raise GaveUp()
        answer: dict[str, Any] = response.json()
        return answer

    async def _request(
        self,
        method: str,
        path: str,
        route: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> Answer | httpx.Response:
        """One request, retried on 503 (after Retry-After), on a 409 for a key still in
        flight, and on a lost connection, at most MAX_TRIES times. Raises GaveUp."""
        for _ in range(MAX_TRIES):
            queued = time.monotonic()
            async with self.sending:
                began = time.monotonic()
                self.recorder.queued.append(began - queued)
                try:
                    response = await self.client.request(method, path, json=body, headers=headers)
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                self.recorder.record(route, status, time.monotonic() - began)
            if status == 0:
                await asyncio.sleep(0.5)
                continue
            if response.status_code == 503:
                await asyncio.sleep(_retry_after(response))
                continue
            if response.status_code == 409 and _in_flight(response):
                await asyncio.sleep(IN_FLIGHT_PAUSE)
                continue
            return response
        raise GaveUp()


def _retry_after(response: Answer | httpx.Response) -> float:
    """Seconds the response asks to wait (its Retry-After in seconds), within [0.1, cap]."""
    with contextlib.suppress(TypeError, ValueError):
        return min(RETRY_AFTER_CAP, max(0.1, float(response.headers.get("Retry-After", "1"))))
    return 1.0


def _in_flight(response: Answer | httpx.Response) -> bool:
    """A 409 saying that a request with the same Idempotency-Key is still being handled (as
    opposed to a 409 of the shop's own: out of stock)."""
    with contextlib.suppress(ValueError):
        problem = response.json()
        text = " ".join(str(problem.get(k, "")) for k in ("type", "title", "detail")).lower()
        return "idempotency" in text or "in flight" in text or "in progress" in text
    return False


async def gather_limited(jobs: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run the jobs at most `limit` at a time; results in order (exceptions as values)."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True)
