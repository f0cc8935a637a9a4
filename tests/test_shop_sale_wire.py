"""The sale's HTTP/1.1 client against a real server on 127.0.0.1: keep-alive, answers by
length, chunked and to-the-close, and a kept connection the server closed meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from sagaway.shop.sale._wire import WireClient, WireError

ANSWERS = {
    b"/length": b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nRetry-After: 2\r\n\r\n{"ok":true}',
    b"/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5\r\n{"ok"\r\n6\r\n:true}\r\n0\r\n\r\n',
    b"/close": b'HTTP/1.0 503 Unavailable\r\n\r\n{"ok":false}',
    b"/bad": b"SMTP ready\r\n\r\n",
}


async def _served(drop_after_answer: bool, calls: list[bytes]):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = [
                int(h.split(b":")[1])
                for h in head.split(b"\r\n")
                if h.lower().startswith(b"content-length")
            ]
            body = await reader.readexactly(length[0]) if length else b""
            path = head.split(b" ")[1]
            calls.append(head.split(b"\r\n")[0] + b" " + body)
            writer.write(ANSWERS[path])
            await writer.drain()
            if drop_after_answer or path == b"/close":
                break
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_answers_by_length_chunked_and_to_the_close_over_kept_connections():
    calls: list[bytes] = []

    async def run() -> list[object]:
        server = await _served(False, calls)
        port = server.sockets[0].getsockname()[1]
        client = WireClient(f"http://127.0.0.1:{port}")
        first = await client.request("POST", "/length", json={"a": 1}, headers={"K": "v"})
        second = await client.request("GET", "/chunked")
        third = await client.request("GET", "/close")
        with pytest.raises(WireError, match=r"HTTP/1\.x"):
            await client.request("GET", "/bad")
        await client.aclose()
        server.close()
        return [first, second, third]

    first, second, third = asyncio.run(run())
    assert (first.status_code, first.json(), first.headers.get("retry-after")) == (
        200,
        {"ok": True},
        "2",
    )
    assert (second.status_code, second.json()) == (201, {"ok": True})
    assert (third.status_code, third.json()) == (503, {"ok": False})
    assert calls[0] == b'POST /length HTTP/1.1 {"a":1}'


def test_a_kept_connection_the_server_closed_is_replaced_and_the_request_sent_once():
    calls: list[bytes] = []

    async def run() -> list[int]:
        server = await _served(True, calls)  # closes every connection after its answer
        port = server.sockets[0].getsockname()[1]
        client = WireClient(f"http://127.0.0.1:{port}")
        statuses = [(await client.request("GET", "/length")).status_code for _ in range(3)]
        await client.aclose()
        server.close()
        return statuses

    assert asyncio.run(run()) == [200, 200, 200]
    assert calls == [b"GET /length HTTP/1.1 "] * 3


def test_a_base_url_that_is_not_http_host_port_is_refused():
    with pytest.raises(ValueError, match="http://host:port"):
        WireClient("https://shop.example")
