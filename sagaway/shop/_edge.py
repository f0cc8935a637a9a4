"""The shop's edge, an ASGI middleware in front of the routes: load shedding against an
in-flight limit, the access log, and the counts `GET /_shop/stats` returns.

Shedding happens before anything else and costs no I/O: a request beyond the limit gets a
503 with `Retry-After` at once. Checkout routes may fill the whole limit, catalog reads only
half of it (`CATALOG_SHARE`), so as the limit falls the catalog is shed first. `/health` and
`/_shop/stats` are never shed and not counted in flight.

With a `LoopLag` the edge also sheds on the queue in front of it: while the event loop's
standing lag is above `queue_target`, new customers (`GET /catalog`, `POST /checkouts`) are
refused, and above `QUEUE_ALL` times the target every request is, so that the customers
already in a checkout keep the CPU the loop has; only while at least `QUEUE_MIN_IN_FLIGHT`
admitted requests are in flight, so a single client of a busy machine is never refused.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from typing import Any

from sagaway.resilience import AdaptiveLimit, LimitPermit
from sagaway.shop._access_log import AccessLog, Exchange
from sagaway.shop._lag import LoopLag

__all__ = ["CATALOG_SHARE", "Edge", "EdgeMiddleware", "route_of"]

CATALOG_SHARE = 0.5
RETRY_AFTER_SECONDS = 1
QUEUE_ALL = 4  # the standing lag, in queue targets, above which every request is shed
QUEUE_MIN_IN_FLIGHT = 2  # fewer admitted requests than this: the lag is not the shop's own
# Path templates, for the per-route counts: ids become {id}.
_TEMPLATES = (
    (re.compile(r"^/checkouts/[^/]+/(customer|confirm|purchase)$"), r"/checkouts/{id}/\1"),
    (re.compile(r"^/checkouts/[^/]+$"), "/checkouts/{id}"),
    (re.compile(r"^/orders/[^/]+$"), "/orders/{id}"),
)
_KNOWN = {"/catalog", "/checkouts", "/health", "/_shop/stats"}
_UNSHED = {"/health", "/_shop/stats"}
_NEW_CUSTOMER = {"/catalog", "/checkouts"}  # shed first when the loop queues


def route_of(method: str, path: str) -> str:
    """`METHOD /template` of a request, e.g. `PUT /checkouts/{id}/customer`; `other` for a
    path the shop does not serve (so that stray paths cannot grow the counts)."""
    for pattern, template in _TEMPLATES:
        if pattern.match(path):
            return f"{method} {pattern.sub(template, path)}"
    return f"{method} {path}" if path in _KNOWN else "other"


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class EdgeMiddleware:
    """The ASGI middleware: `app.add_middleware(EdgeMiddleware, edge=edge)`."""

    def __init__(self, app: Any, edge: Edge) -> None:
        self.app, self.edge = app, edge

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.edge.handle(self.app, scope, receive, send)


class Edge:
    """Shedding, access log and counts for the application it is installed in (with
    `EdgeMiddleware`): `limit` None means no shedding; `log` None means no access log."""

    def __init__(
        self,
        limit: AdaptiveLimit | None,
        log: AccessLog | None,
        lag: LoopLag | None = None,
        queue_target: float = 0.025,
    ) -> None:
        self.limit, self.log, self.lag, self.queue_target = limit, log, lag, queue_target
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, int]] = Counter()
        self.shed: Counter[str] = Counter()
        self._in_flight = 0
        self.shed_queueing = 0  # of the shed requests, those refused for the loop's lag

    def stats(self) -> dict[str, Any]:
        """In flight, the limit, shed counts and per-route status counts."""
        with self._lock:
            routes: dict[str, dict[str, int]] = {}
            for (route, status), n in sorted(self.counts.items()):
                routes.setdefault(route, {})[str(status)] = n
            return {
                "in_flight": self._in_flight,
                "limit": None if self.limit is None else self.limit.limit,
                "limiter": None if self.limit is None else self.limit.stats(),
                "shed": sum(self.shed.values()),
                "shed_by_route": dict(self.shed),
                "shed_queueing": self.shed_queueing,
                "loop_lag": None
                if self.lag is None
                else {"standing": self.lag.standing(), "worst": self.lag.worst},
                "routes": routes,
            }

    async def handle(self, app: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Shed, or pass the request to `app`; count and log it either way."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.time()
        path, method = scope["path"], scope["method"]
        route = route_of(method, path)
        answer: dict[str, Any] = {"status": 500, "sent": 0, "received": 0}
        permit: LimitPermit | None = None
        if self.limit is not None and path not in _UNSHED:
            queueing = self._queueing(path)
            if not queueing:
                share = CATALOG_SHARE if path == "/catalog" else 1.0
                permit = self.limit.try_acquire(share)
            if permit is None:
                answer.update(status=503, sent=len(_OVERLOADED))
                with self._lock:
                    self.shed[route] += 1
                    self.counts[(route, 503)] += 1
                    self.shed_queueing += queueing
                self._write(scope, started, answer, shed=True)
                await send(_OVERLOADED_START)
                await send(_OVERLOADED_BODY)
                return
        counted = path not in _UNSHED
        if counted:
            with self._lock:
                self._in_flight += 1
        finished = False

        def finish() -> None:
            # Counted and logged before the answer's last byte leaves: a client that has its
            # answer finds it in the stats and the log.
            nonlocal finished
            if finished:
                return
            finished = True
            if permit is not None:
                self._report(permit, answer["status"], scope)
            with self._lock:
                if counted:
                    self._in_flight -= 1
                self.counts[(route, answer["status"])] += 1
            self._write(scope, started, answer, shed=False)

        async def counting_receive() -> Any:
            message = await receive()
            answer["received"] += len(message.get("body", b""))
            return message

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["sent"] += len(message.get("body", b""))
                if not message.get("more_body"):
                    finish()
            await send(message)

        try:
            await app(scope, counting_receive, counting_send)
        finally:
            finish()

    def _queueing(self, path: str) -> bool:
        """Whether the loop's standing lag says to shed a request for `path` unseen."""
        if self.lag is None or self.limit is None or self.limit.in_flight < QUEUE_MIN_IN_FLIGHT:
            # A loop late with next to nothing of the shop's in flight is late for reasons
            # refusing requests would not remove (a busy machine, a slow start).
            return False
        self.lag.ensure_running()
        standing = self.lag.standing()
        if path in _NEW_CUSTOMER:
            return standing > self.queue_target
        return standing > QUEUE_ALL * self.queue_target

    @staticmethod
    def _report(permit: LimitPermit, status: int, scope: dict[str, Any]) -> None:
        # Long polls wait on purpose and client errors say nothing about load: no sample.
        if b"wait=" in scope.get("query_string", b"") or 400 <= status < 500:
            permit.ignore()
        elif status >= 500:
            permit.dropped()
        else:
            permit.success()

    def _write(
        self, scope: dict[str, Any], started: float, answer: dict[str, Any], shed: bool
    ) -> None:
        if self.log is None:
            return
        client = scope.get("client") or ("-", 0)
        server = scope.get("server") or ("127.0.0.1", 0)
        query = scope.get("query_string", b"").decode("latin-1")
        self.log.write(
            Exchange(
                started=started,
                ended=time.time(),
                method=scope["method"],
                host=_header(scope, b"host") or f"{server[0]}:{server[1]}",
                path=scope["path"] + (f"?{query}" if query else ""),
                http_version=scope.get("http_version", "1.1"),
                client=f"{client[0]}:{client[1]}",
                target=f"{server[0]}:{server[1]}",
                user_agent=_header(scope, b"user-agent"),
                status=answer["status"],
                received_bytes=answer["received"],
                sent_bytes=answer["sent"],
                shed=shed,
            )
        )


_OVERLOADED = json.dumps(
    {
        "type": "https://sagaway.dev/problems/overloaded",
        "title": "Overloaded",
        "status": 503,
        "detail": f"the shop is overloaded: retry after {RETRY_AFTER_SECONDS} s",
    }
).encode()
# The refusal, made once: a shed request costs its parsing, a lookup and two sends.
_OVERLOADED_START = {
    "type": "http.response.start",
    "status": 503,
    "headers": [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(_OVERLOADED)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
    ],
}
_OVERLOADED_BODY = {"type": "http.response.body", "body": _OVERLOADED}
