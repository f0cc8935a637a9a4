"""The sale's HTTP/1.1 client to the shop: keep-alive connections over asyncio streams.

The customers of a sale send hundreds of requests a second from one process; a general
client (httpx) spends about 4 ms of CPU on each on the 2-core reference machine, so the
generator, not the shop, ran out of CPU first and its own queue showed as the shop's
latency. This client does only what the sale needs (JSON bodies, `Content-Length` or
chunked or to-the-close answers, keep-alive to one host) at a fraction of that cost.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["Answer", "WireClient", "WireError"]


class WireError(httpx.TransportError):
    """The connection failed, closed early, timed out, or the answer was not HTTP/1.1."""


class Headers(dict[str, str]):
    """Response headers, looked up without regard to case."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


class Answer:
    """A response: `status_code`, `headers` (case-insensitive), `content`, `json()`."""

    def __init__(self, status_code: int, headers: Headers, content: bytes) -> None:
        self.status_code, self.headers, self.content = status_code, headers, content

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.content)


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class WireClient:
    """Requests to `base_url` (http://host:port) over a pool of keep-alive connections,
    as many as requests in flight at once (the caller bounds them); `timeout` seconds per
    request, connecting included."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"WireClient: base_url={base_url!r} must be http://host:port")
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self._authority = f"{self.host}:{self.port}".encode()
        self._idle: deque[_Connection] = deque()

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Send one request and read its answer; WireError on any failure."""
        body = b"" if json is None else _dumps(json)
        head = [f"{method} {path} HTTP/1.1".encode(), b"host: " + self._authority]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}".encode("latin-1"))
        if json is not None:
            head.append(b"content-type: application/json")
        if body or method in ("POST", "PUT"):
            head.append(b"content-length: " + str(len(body)).encode())
        data = b"\r\n".join(head) + b"\r\n\r\n" + body
        connection = None
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    reused = bool(self._idle)
                    connection = self._idle.pop() if reused else await self._connect()
                    connection[1].write(data)
                    try:
                        answer, keep = await _read(connection[0])
                        break
                    except (asyncio.IncompleteReadError, ConnectionError) as e:
                        if not reused or getattr(e, "partial", b""):
                            raise
                        # A kept connection the server had closed meanwhile: it read nothing
                        # of this request, which goes again on another connection.
                        connection[1].close()
                        connection = None
        except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as e:
            if connection is not None:
                connection[1].close()
            raise WireError(f"{method} {path}: {type(e).__name__}: {e}") from None
        except BaseException:
            if connection is not None:
                connection[1].close()
            raise
        if keep:
            self._idle.append(connection)
        else:
            connection[1].close()
        return answer

    async def _connect(self) -> _Connection:
        return await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    async def aclose(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.pop()[1].close()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def _read(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """One answer from `reader`, and whether its connection may be kept."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {lines[0]!r}")
    status = int(rest[:3])
    headers = Headers()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        content = await _chunks(reader)
    elif status in (204, 304) or 100 <= status < 200:
        content = b""
    elif "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    else:
        return Answer(status, headers, await reader.read()), False  # the body ends at close
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return Answer(status, headers, content), keep


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent to the sale
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
