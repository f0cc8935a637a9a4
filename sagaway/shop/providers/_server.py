"""What the three providers share: a threaded HTTP/1.1 server on 127.0.0.1 with JSON routes,
RFC 9457 problems, the fault controls, `/health` and `/_stats`, and a SQLite file of their own.

A provider subclasses `Provider`: it declares its tables (`SCHEMA`), its routes (`routes`)
and its counts (`stats`). Each route gets a `Call` and returns `(status, body)`, or raises
`Failure` for a problem answer.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from sagaway.shop.providers._faults import Faults, InvalidFaults

__all__ = ["Call", "Failure", "Provider", "Route", "serve"]


class Failure(Exception):
    """An answer other than success: `status` with a problem body saying `detail`."""

    def __init__(self, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after


@dataclass(frozen=True)
class Call:
    """One request to a business route: path parameters, query, headers and JSON body."""

    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None

    def idempotency_key(self) -> str:
        """The `Idempotency-Key` header; Failure(400) when it is missing."""
        key = self.headers.get("idempotency-key", "").strip()
        if not key or len(key) > 255:
            raise Failure(400, "send an Idempotency-Key header (1 to 255 characters)")
        return key

    def text(self, name: str) -> str:
        """A non-empty string member of the body; Failure(422) naming it otherwise."""
        value = self.body.get(name) if isinstance(self.body, dict) else None
        if not isinstance(value, str) or not value:
            raise Failure(422, f"the body needs {name!r}, a non-empty string")
        return value


Handler = Callable[[Call], tuple[int, Any]]


@dataclass(frozen=True)
class Route:
    """A business route: the method, a path pattern with named groups, and its handler."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler = field(compare=False)


class Provider:
    """A provider service: its tables in a SQLite file of its own, its routes and its faults."""

    NAME: ClassVar[str] = ""
    SCHEMA: ClassVar[str] = ""
    LATENCY_MS: ClassVar[float] = 0.0  # the latency of every call when no fault says otherwise

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.faults = Faults(self.LATENCY_MS)
        self._local = threading.local()
        self.connection().executescript(self.SCHEMA)  # each statement commits on its own

    def connection(self) -> sqlite3.Connection:
        """This thread's connection to the provider's file."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE): checks and changes happen atomically."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def routes(self) -> list[Route]:
        """The business routes (faults apply to them)."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """The counts the invariants are checked against (`GET /_stats`)."""
        raise NotImplementedError


def route(method: str, path: str, handler: Handler) -> Route:
    """A `Route` for `path`, where `{name}` matches one path segment."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(f"^{regex}$"), handler)


def _make_handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    routes = provider.routes()

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: callers reuse their connections
        server_version = f"sagaway-{provider.NAME}"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the shop's access log is the one that counts

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            problem = status >= 400
            kind = "application/problem+json" if problem else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _problem(self, failure: Failure) -> None:
            body = {
                "type": f"https://sagaway.dev/problems/{provider.NAME}-{failure.status}",
                "title": self.responses.get(failure.status, ("Error",))[0],
                "status": failure.status,
                "detail": failure.detail,
            }
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = str(failure.retry_after)
            self._reply(failure.status, body, headers)

        def _drop(self) -> None:
            """Close the connection unanswered, as a provider that is down would."""
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise Failure(400, "the body is not JSON") from None

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            try:
                body = self._body()
                if parts.path == "/health" and method == "GET":
                    # Down is down: an outage drops the health check as it drops every call;
                    # only a gray failure keeps answering it while the calls hang.
                    if provider.faults.settings.mode == "outage":
                        return self._drop()
                    return self._reply(200, {"status": "ok"})
                if parts.path == "/_stats" and method == "GET":
                    return self._reply(200, provider.stats())
                if parts.path == "/_faults":
                    if method == "PUT":
                        try:
                            provider.faults.set(body)
                        except InvalidFaults as exc:
                            raise Failure(422, f"PUT /_faults: {exc}") from None
                    if method in ("GET", "PUT"):
                        return self._reply(200, provider.faults.settings.as_json())
                for r in routes:
                    match = r.pattern.match(parts.path)
                    if match and r.method == method:
                        verdict = provider.faults.admit()
                        if verdict.close:
                            return self._drop()
                        if verdict.status is not None:
                            raise Failure(verdict.status, verdict.detail, verdict.retry_after)
                        call = Call(
                            params=match.groupdict(),
                            query=dict(parse_qsl(parts.query)),
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                        )
                        status, answer = r.handler(call)
                        return self._reply(status, answer)
                raise Failure(
                    404, f"no route {method} {parts.path} at the {provider.NAME} provider"
                )
            except Failure as failure:
                self._problem(failure)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

    return RequestHandler


def serve(provider: Provider, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server for `provider` bound to `host:port` (0: any free port), not yet serving."""
    server = ThreadingHTTPServer((host, port), _make_handler(provider))
    server.daemon_threads = True
    return server


KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
    response TEXT NOT NULL
);
"""


def once(
    provider: Provider, call: Call, create: Callable[[sqlite3.Connection], tuple[int, Any]]
) -> tuple[int, Any]:
    """Run `create` once per `Idempotency-Key`: a later call with the key and the same body
    gets the first answer again (whatever happened meanwhile), with another body a 422. The
    check, the effect and the record of the answer share one transaction; an effect that
    fails (raises Failure) records nothing, so a retry may succeed."""
    key = call.idempotency_key()
    fingerprint = json.dumps(call.body, sort_keys=True)
    with provider.transaction() as conn:
        row = conn.execute(
            "SELECT fingerprint, status, response FROM idempotency_keys WHERE key = ?", (key,)
        ).fetchone()
        if row is not None:
            if row[0] != fingerprint:
                raise Failure(
                    422, f"Idempotency-Key {key!r} was used with another body: use a new key"
                )
            return int(row[1]), json.loads(row[2])
        status, body = create(conn)
        conn.execute(
            "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?)",
            (key, fingerprint, status, json.dumps(body)),
        )
        return status, body
