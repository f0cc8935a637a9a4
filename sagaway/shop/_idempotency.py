"""`Idempotency-Key` on every state-changing request (POST, PUT, PATCH, DELETE), after the
IETF httpapi "The Idempotency-Key HTTP Header Field" draft:

- the first request with a key is handled and its response stored with the key;
- the same key with the same request (method, path and body) gets that response again, with
  `Idempotency-Replayed: true`, however often and from whichever process;
- the same key with another request is refused with 422;
- while the first request with the key is still being handled, another gets 409;
- an error answer (4xx or 5xx) is not kept: the key is free again and a retry runs the
  request anew (a purchase refused because the checkout was not confirmed yet succeeds once
  it is); keys expire after `ttl` seconds (24 hours by default).

Keys live in the shop's table `shop_idempotency` in the store's database; claiming one is a
single `INSERT ... ON CONFLICT DO NOTHING`, atomic across processes on both backends.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

try:
    from starlette.concurrency import run_in_threadpool
except ImportError:  # pragma: no cover - the wheel test runs it without extras
    raise ImportError(
        "the shop's HTTP service needs Starlette, which is not installed: "
        "pip install 'sagaway[shop]'"
    ) from None

from sagaway.api._problems import problem_body
from sagaway.shop._db import ShopDb

__all__ = ["Claim", "IdempotencyKeys", "IdempotencyMiddleware"]

DAY = 86_400.0
# A key whose first request has been in flight this long belongs to a process that died
# mid-request: a retry may take it over.
STALE_SECONDS = 60.0
_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_BODY = 64 * 1024  # the shop's requests are small; a key's stored body stays small too
_KEPT_HEADERS = {b"content-type", b"location", b"etag"}


class Claim:
    """The outcome of claiming a key: `owned` (handle the request), or `status` and
    `body`/`headers` to answer with (a replay, 409 or 422)."""

    def __init__(self, owned: bool, status: int = 0, headers: Any = None, body: bytes = b""):
        self.owned, self.status, self.headers, self.body = owned, status, headers or [], body


class IdempotencyKeys:
    """The key table: claim, complete, release, prune."""

    def __init__(self, db: ShopDb, ttl: float = DAY) -> None:
        self.db, self.ttl = db, ttl

    def claim(self, key: str, fingerprint: str, path: str) -> Claim:
        """Take `key` for a request, or say how to answer instead."""
        now = time.time()
        with self.db.transaction() as tx:
            tx.execute(
                "DELETE FROM shop_idempotency WHERE key = ? AND created_at < ?",
                (key, now - self.ttl),
            )
            taken = tx.execute(
                "INSERT INTO shop_idempotency (key, fingerprint, state, created_at) "
                "VALUES (?, ?, 'in_flight', ?) ON CONFLICT (key) DO NOTHING",
                (key, fingerprint, now),
            ).rowcount
            if taken == 1:
                return Claim(owned=True)
            row = tx.execute(
                "SELECT fingerprint, state, status, headers, body, created_at "
                "FROM shop_idempotency WHERE key = ?",
                (key,),
            ).fetchone()
            if row[0] != fingerprint:
                return _problem(
                    422,
                    f"Idempotency-Key {key!r} was used for another request (method, path or "
                    "body differ): send a new key for a new request",
                    path,
                )
            if row[1] == "in_flight":
                if row[5] >= now - STALE_SECONDS:
                    return _problem(
                        409,
                        f"a request with Idempotency-Key {key!r} is still being handled: "
                        "retry it in a moment to get its response",
                        path,
                    )
                tx.execute("UPDATE shop_idempotency SET created_at = ? WHERE key = ?", (now, key))
                return Claim(owned=True)
            headers = [(k.encode(), v.encode()) for k, v in json.loads(row[3])]
            headers.append((b"idempotency-replayed", b"true"))
            return Claim(False, int(row[2]), headers, row[4].encode())

    def complete(self, key: str, status: int, headers: list, body: bytes) -> None:
        """Keep the response for replays; an error answer frees the key instead."""
        with self.db.transaction() as tx:
            if status >= 400:
                tx.execute("DELETE FROM shop_idempotency WHERE key = ?", (key,))
                return
            kept = [(k.decode(), v.decode()) for k, v in headers if k.lower() in _KEPT_HEADERS]
            tx.execute(
                "UPDATE shop_idempotency SET state = 'done', status = ?, headers = ?, body = ? "
                "WHERE key = ?",
                (status, json.dumps(kept), body.decode("utf-8", "replace"), key),
            )

    def release(self, key: str) -> None:
        """Free a key whose request failed without a response."""
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM shop_idempotency WHERE key = ?", (key,))

    def prune(self) -> int:
        """Delete expired keys; return how many."""
        with self.db.transaction() as tx:
            cursor = tx.execute(
                "DELETE FROM shop_idempotency WHERE created_at < ?", (time.time() - self.ttl,)
            )
            return int(cursor.rowcount)


def _problem(status: int, detail: str, path: str) -> Claim:
    body = json.dumps(problem_body(status, detail, instance=path)).encode()
    return Claim(False, status, [(b"content-type", b"application/problem+json")], body)


class IdempotencyMiddleware:
    """ASGI middleware applying `keys` to requests that carry an `Idempotency-Key`. Expired
    keys are pruned every `prune_every` claims."""

    def __init__(self, app: Any, keys: IdempotencyKeys, prune_every: int = 1000) -> None:
        self.app, self.keys, self.prune_every = app, keys, prune_every
        self._claims = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS:
            await self.app(scope, receive, send)
            return
        key = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"idempotency-key"), ""
        )
        if not key:
            await self.app(scope, receive, send)
            return
        if len(key) > 255:
            detail = "Idempotency-Key is longer than 255 characters: send a shorter key (a UUID)"
            await _answer(send, _problem(400, detail, scope["path"]))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BODY:
                detail = f"the body is over {MAX_BODY // 1024} KiB: send a smaller request"
                await _answer(send, _problem(413, detail, scope["path"]))
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        digest = hashlib.sha256(f"{scope['method']} {scope['path']}\n".encode() + body)
        claim = await run_in_threadpool(self.keys.claim, key, digest.hexdigest(), scope["path"])
        self._claims += 1
        if self._claims % self.prune_every == 0:
            await run_in_threadpool(self.keys.prune)
        if not claim.owned:
            await _answer(send, claim)
            return
        await self._handle(scope, receive, send, key, body)

    async def _handle(
        self, scope: dict[str, Any], receive: Any, send: Any, key: str, body: bytes
    ) -> None:
        response: dict[str, Any] = {"status": 0, "headers": [], "body": []}
        given = False

        async def replay_body() -> dict[str, Any]:
            nonlocal given
            if given:  # the body was read here: what is left to hear is the disconnect
                return dict(await receive())
            given = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def keeping_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response["status"], response["headers"] = message["status"], message["headers"]
            elif message["type"] == "http.response.body":
                response["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, keeping_send)
        except BaseException:
            await run_in_threadpool(self.keys.release, key)
            raise
        await run_in_threadpool(
            self.keys.complete,
            key,
            response["status"] or 500,
            response["headers"],
            b"".join(response["body"]),
        )


async def _answer(send: Any, claim: Claim) -> None:
    headers = [*claim.headers, (b"content-length", str(len(claim.body)).encode())]
    await send({"type": "http.response.start", "status": claim.status, "headers": headers})
    await send({"type": "http.response.body", "body": claim.body})
