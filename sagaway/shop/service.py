"""The shop's HTTP service: the checkout screens as JSON routes over the checkout saga.

Each screen is a signal to the checkout's saga (`customer`, `confirm`, `purchase`); the
service records which screens were passed in `shop_checkouts`, with conditional updates, so
screens are taken in order and once. Errors are RFC 9457 problem details. The edge
(`sagaway.shop._edge`) sheds load and writes the access log; `Idempotency-Key` is handled by
`sagaway.shop._idempotency` before any route runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError:  # pragma: no cover - the wheel test runs it without extras
    raise ImportError(
        "the shop's HTTP service needs FastAPI, which is not installed: pip install 'sagaway[shop]'"
    ) from None

from sagaway.api._problems import Problem, problem_body, problem_for
from sagaway.engine.app import App
from sagaway.errors import SagawayError
from sagaway.resilience import AdaptiveLimit
from sagaway.shop._access_log import AccessLog
from sagaway.shop._db import ShopDb
from sagaway.shop._edge import Edge, EdgeMiddleware
from sagaway.shop._idempotency import DAY, IdempotencyKeys, IdempotencyMiddleware
from sagaway.shop._lag import LoopLag
from sagaway.shop.catalog import CATALOG, PRICES
from sagaway.store.base import RunStatus

__all__ = ["ShopSettings", "create_shop"]

log = logging.getLogger("sagaway.shop")

MAX_WAIT = 30.0


@dataclass(frozen=True)
class ShopSettings:
    """How the service runs.

    `max_in_flight`: a fixed in-flight limit; None (default) adapts it between
    `min_in_flight` and `max_limit` with `AdaptiveLimit("gradient")`; `shedding=False` sheds
    nothing. The shop's database pool is a quarter of the most requests the edge admits (at
    least 2, at most 16): a request holds a connection for a short statement, so a quarter
    of the requests in flight can wait for one briefly without the edge ever queueing more.
    `queue_target`: with the adaptive limit, the edge also sheds on the event loop's
    standing lag (`sagaway.shop._lag.LoopLag`): new customers above this many seconds,
    every request above four times it; None turns that off (a fixed limit never uses it).
    `log_dir`: where `access.log` goes (None: no access log). `inventory_url`: where the
    catalog reads the stock. `idempotency_ttl`: seconds a key is kept."""

    max_in_flight: int | None = None
    shedding: bool = True
    initial_in_flight: int = 32
    min_in_flight: int = 8
    max_limit: int = 256
    queue_target: float | None = 0.025
    log_dir: str | None = None
    inventory_url: str | None = None
    idempotency_ttl: float = DAY

    def limit(self) -> AdaptiveLimit | None:
        """The edge's in-flight limit, or None without shedding."""
        if not self.shedding:
            return None
        if self.max_in_flight is not None:
            n = self.max_in_flight  # AIMD pinned to one value: a fixed limit
            return AdaptiveLimit("aimd", initial=n, min_limit=n, max_limit=n, name="shop-edge")
        return AdaptiveLimit(
            "gradient",
            initial=self.initial_in_flight,
            min_limit=self.min_in_flight,
            max_limit=self.max_limit,
            name="shop-edge",
            # While it measures the no-load latency the gradient admits this many: the
            # floor of the shop, not a handful.
            probe_concurrency=self.min_in_flight,
            probe_samples=20,
        )

    def loop_lag(self) -> LoopLag | None:
        """The edge's measure of the loop's queue: adaptive shedding only."""
        if not self.shedding or self.max_in_flight is not None or self.queue_target is None:
            return None
        return LoopLag()

    def pool_size(self) -> int:
        """The shop database's connection budget, derived from the in-flight bound."""
        most = self.max_in_flight or self.max_limit
        return max(2, min(16, most // 4))


def _body(raw: bytes, what: str) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise Problem(400, f"the body of {what} is not JSON: send a JSON object") from None
    if not isinstance(body, dict):
        raise Problem(422, f"the body of {what} must be a JSON object")
    return body


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise Problem(422, 'items must be a non-empty list of {"sku": ..., "qty": ...}')
    checked = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("sku") not in PRICES:
            raise Problem(
                422, f"items[{i}]: sku must be one of {', '.join(sorted(PRICES))} (GET /catalog)"
            )
        qty = item.get("qty")
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= 100:
            raise Problem(422, f"items[{i}]: qty must be a whole number from 1 to 100")
        checked.append({"sku": item["sku"], "qty": qty})
    return checked


def _ended(checkout_id: str, status: str) -> Problem:
    return Problem(409, f"checkout {checkout_id} is {status}: start a new checkout")


class Checkouts:
    """The routes' work: the shop's tables and the saga's signals."""

    def __init__(self, app: App, db: ShopDb) -> None:
        self.app, self.db = app, db

    def _row(self, checkout_id: str) -> Any:
        row = self.db.one(
            "SELECT id, items, amount, run_id, customer, confirmed, order_id "
            "FROM shop_checkouts WHERE id = ?",
            (checkout_id,),
        )
        if row is None:
            raise Problem(404, f"no checkout {checkout_id}: start one with POST /checkouts")
        return row

    def status(self, row: Any) -> str:
        """The checkout's status: "placed" once its order is, else the run's outcome once
        it ended, "compensating" while it unwinds, else the last screen passed."""
        if row[6]:
            placed = self.db.one("SELECT status FROM shop_orders WHERE id = ?", (row[6],))
            if placed is not None and placed[0] == "placed":
                return "placed"
        run_status = RunStatus(self.app.get(row[3]).status)
        if run_status.is_terminal:
            return "placed" if run_status == RunStatus.SUCCEEDED else str(run_status)
        if run_status == RunStatus.COMPENSATING:
            return "compensating"  # it is unwinding: no screen or purchase is taken any more
        if row[6]:
            return "purchasing"
        if row[5]:
            return "confirmed"
        return "customer" if row[4] else "open"

    def _open(self, checkout_id: str) -> Any:
        row = self._row(checkout_id)
        status = self.status(row)
        if status not in ("open", "customer", "confirmed", "purchasing"):
            raise _ended(checkout_id, status)
        return row

    def create(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        checkout_id = f"co_{uuid.uuid4().hex[:20]}"
        amount = sum(PRICES[i["sku"]] * i["qty"] for i in items)
        run = self.app.start("checkout", checkout_id, items, amount, key=f"checkout:{checkout_id}")
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO shop_checkouts (id, items, amount, run_id, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (checkout_id, json.dumps(items), amount, run.id, time.time()),
            )
        return {"id": checkout_id, "status": "open", "amount": amount}

    # The value of each screen's column before the screen was passed.
    _UNSET = {"customer": None, "confirmed": 0}

    def _screen(self, row: Any, column: str, value: Any, signal: str, payload: Any) -> None:
        """Record a screen once (a conditional update), then signal the saga; a signal that
        fails undoes the record so that a retry can signal again."""
        unset = self._UNSET[column]
        where = f"{column} IS NULL" if unset is None else f"{column} = {unset}"
        with self.db.transaction() as tx:
            changed = tx.execute(
                f"UPDATE shop_checkouts SET {column} = ? WHERE id = ? AND {where}",
                (value, row[0]),
            ).rowcount
        if not changed:
            return
        try:
            self.app.signal(row[3], signal, payload)
        except BaseException:
            with self.db.transaction() as tx:
                tx.execute(f"UPDATE shop_checkouts SET {column} = ? WHERE id = ?", (unset, row[0]))
            raise

    def customer(self, checkout_id: str, body: dict[str, Any]) -> dict[str, Any]:
        email, address = body.get("email"), body.get("address")
        if not isinstance(email, str) or "@" not in email.strip("@"):
            raise Problem(422, "email must be an e-mail address (name@example.com)")
        if not isinstance(address, str) or not address.strip():
            raise Problem(422, "address must be a non-empty string")
        row = self._open(checkout_id)
        given = {"email": email, "address": address}
        self._screen(row, "customer", json.dumps(given), "customer", given)
        stored = json.loads(self._row(checkout_id)[4])
        if stored != given:
            raise Problem(409, f"checkout {checkout_id} already has other customer details")
        return {"id": checkout_id, "status": self.status(self._row(checkout_id))}

    def confirm(self, checkout_id: str) -> dict[str, Any]:
        row = self._open(checkout_id)
        if not row[4]:
            raise Problem(
                409, f"give the customer details first: PUT /checkouts/{checkout_id}/customer"
            )
        self._screen(row, "confirmed", 1, "confirm", {})
        return {"id": checkout_id, "status": self.status(self._row(checkout_id))}

    def purchase(self, checkout_id: str, body: dict[str, Any]) -> dict[str, Any]:
        card = body.get("card")
        if not isinstance(card, str) or not card.startswith("tok_"):
            raise Problem(422, "card must be a card token from the payment form (tok_...)")
        row = self._open(checkout_id)
        if not row[5]:
            raise Problem(409, f"confirm first: POST /checkouts/{checkout_id}/confirm")
        order_id = f"ord_{uuid.uuid4().hex[:20]}"
        with self.db.transaction() as tx:
            taken = tx.execute(
                "UPDATE shop_checkouts SET order_id = ? "
                "WHERE id = ? AND order_id IS NULL AND closed = 0",
                (order_id, checkout_id),
            ).rowcount
            if taken:
                tx.execute(
                    "INSERT INTO shop_orders (id, checkout, amount, status, created_at) "
                    "VALUES (?, ?, ?, 'pending', ?)",
                    (order_id, checkout_id, row[2], time.time()),
                )
        if not taken:
            now = self._row(checkout_id)
            if now[6]:
                raise Problem(409, f"checkout {checkout_id} was purchased already: order {now[6]}")
            # Its saga unwound between the check above and the update: no order was taken.
            raise _ended(checkout_id, self.status(now))
        try:
            self.app.signal(row[3], "purchase", {"order": order_id, "card": card})
        except BaseException:
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM shop_orders WHERE id = ?", (order_id,))
                tx.execute("UPDATE shop_checkouts SET order_id = NULL WHERE id = ?", (checkout_id,))
            raise
        return {"order": order_id, "id": checkout_id, "status": "purchasing"}

    def show(self, checkout_id: str) -> dict[str, Any]:
        row = self._row(checkout_id)
        orders = self.db.all(
            "SELECT id FROM shop_orders WHERE checkout = ? ORDER BY created_at", (checkout_id,)
        )
        return {
            "id": checkout_id,
            "status": self.status(row),
            "items": json.loads(row[1]),
            "amount": row[2],
            "orders": [o[0] for o in orders],
        }

    def order(self, order_id: str, wait: float) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while True:
            row = self.db.one(
                "SELECT id, checkout, status, amount FROM shop_orders WHERE id = ?", (order_id,)
            )
            if row is None:
                raise Problem(404, f"no order {order_id}")
            if row[2] != "pending" or time.monotonic() >= deadline:
                return {"id": row[0], "checkout": row[1], "status": row[2], "amount": row[3]}
            time.sleep(0.05)


class CatalogView:
    """The catalog with `in_stock` from the inventory, read at most every 5 s."""

    def __init__(self, inventory_url: str | None) -> None:
        self.inventory_url = inventory_url
        self._lock = threading.Lock()
        self._read_at = -1e9
        self._available: dict[str, int] = {}

    def body(self) -> bytes:
        with self._lock:
            if self.inventory_url and time.monotonic() - self._read_at > 5.0:
                self._read_at = time.monotonic()
                self._available = self._stock()
            available = dict(self._available)
        items = [
            {
                "sku": p.sku,
                "name": p.name,
                "price": p.price,
                "in_stock": available.get(p.sku, 1) > 0,
            }
            for p in CATALOG
        ]
        return json.dumps({"items": items}, separators=(",", ":")).encode()

    def _stock(self) -> dict[str, int]:
        import httpx

        try:
            answer = httpx.get(f"{self.inventory_url}/stock", timeout=1.0)
            return {k: int(v) for k, v in answer.json()["available"].items()}
        except (httpx.HTTPError, ValueError, KeyError):
            return self._available  # the last known stock; the catalog still answers


def create_shop(app: App, settings: ShopSettings | None = None) -> FastAPI:
    """The shop's FastAPI application for `app` (an App declared by `build_app`), behind
    the edge (shedding, access log) and the idempotency middleware. `.state.edge` holds
    the edge's counts, `.state.db` the shop's tables."""
    settings = settings or ShopSettings()
    _ = app.store  # the store first: it creates (or refuses) the database the shop's tables join
    db = ShopDb(app.url, pool_size=settings.pool_size())
    checkouts = Checkouts(app, db)
    catalog = CatalogView(settings.inventory_url)
    keys = IdempotencyKeys(db, settings.idempotency_ttl)
    keys.prune()
    server = FastAPI(title="sagaway reference shop", docs_url=None, redoc_url=None)

    def answer(body: dict[str, Any], status: int = 200, **headers: str) -> Any:
        return JSONResponse(body, status_code=status, headers=headers or None)

    def problem(request: Any, status: int, detail: str, **extra: Any) -> Any:
        body = problem_body(status, detail, request.url.path, **extra)
        return JSONResponse(body, status, media_type="application/problem+json")

    @server.exception_handler(Problem)
    def _problem(request: Any, exc: Problem) -> Any:
        return problem(request, exc.status, exc.detail, **exc.extra)

    @server.exception_handler(SagawayError)
    def _sagaway(request: Any, exc: SagawayError) -> Any:
        # e.g. the run ended between the check and the signal: 409, or the store is down: 503
        found = problem_for(exc)
        return problem(request, found.status, found.detail)

    @server.exception_handler(RequestValidationError)
    def _invalid(request: Any, exc: RequestValidationError) -> Any:
        wrong = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return problem(request, 422, wrong or "invalid request")

    @server.exception_handler(StarletteHTTPException)
    def _http(request: Any, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 404:
            return problem(request, 404, f"no such route: {request.url.path} (see docs/shop.md)")
        return problem(request, exc.status_code, str(exc.detail))

    @server.exception_handler(Exception)
    def _unexpected(request: Any, exc: Exception) -> Any:
        log.exception("%s %s failed", request.method, request.url.path)
        return problem(request, 500, f"unexpected {type(exc).__name__}; see the shop's log")

    @server.get("/health")
    def health() -> Any:
        return answer({"status": "ok"})

    @server.get("/catalog")
    def read_catalog(request: Request) -> Any:
        data = catalog.body()
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=5"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="application/json", headers=headers)

    @server.post("/checkouts")
    async def create_checkout(request: Request) -> Any:
        items = _items(_body(await request.body(), "POST /checkouts"))
        created = await _thread(checkouts.create, items)
        return answer(created, 201, Location=f"/checkouts/{created['id']}")

    @server.put("/checkouts/{checkout_id}/customer")
    async def customer(checkout_id: str, request: Request) -> Any:
        body = _body(await request.body(), "PUT /checkouts/{id}/customer")
        return answer(await _thread(checkouts.customer, checkout_id, body))

    @server.post("/checkouts/{checkout_id}/confirm")
    async def confirm(checkout_id: str) -> Any:
        return answer(await _thread(checkouts.confirm, checkout_id))

    @server.post("/checkouts/{checkout_id}/purchase")
    async def purchase(checkout_id: str, request: Request) -> Any:
        if not request.headers.get("idempotency-key"):
            raise Problem(
                400,
                "purchase needs an Idempotency-Key header (a new UUID per purchase attempt, "
                "the same one on every retry of it)",
            )
        body = _body(await request.body(), "POST /checkouts/{id}/purchase")
        bought = await _thread(checkouts.purchase, checkout_id, body)
        return answer(bought, 202, Location=f"/orders/{bought['order']}")

    @server.get("/checkouts/{checkout_id}")
    def show_checkout(checkout_id: str) -> Any:
        return answer(checkouts.show(checkout_id))

    @server.get("/orders/{order_id}")
    def show_order(order_id: str, wait: float = 0.0) -> Any:
        if not 0 <= wait <= MAX_WAIT:
            raise Problem(422, f"wait must be from 0 to {MAX_WAIT:g} seconds")
        return answer(checkouts.order(order_id, wait))

    @server.get("/_shop/stats")
    def stats() -> Any:
        return answer(edge.stats())

    edge = Edge(
        settings.limit(),
        AccessLog(settings.log_dir) if settings.log_dir else None,
        settings.loop_lag(),
        settings.queue_target or 0.0,
    )
    server.add_middleware(IdempotencyMiddleware, keys=keys)
    server.add_middleware(EdgeMiddleware, edge=edge)  # added last: the outermost
    server.state.edge = edge
    server.state.db = db
    return server


async def _thread(fn: Any, *args: Any) -> Any:
    return await run_in_threadpool(fn, *args)
