"""Timeout: coroutines are cancelled; plain functions are abandoned in their thread."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from sagaway.resilience import Timeout, TimeoutExceeded

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def test_slow_coroutine_is_cancelled():
    seen = []

    @Timeout(0.05)
    async def slow() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    started = time.monotonic()
    with pytest.raises(TimeoutExceeded) as exceeded:
        asyncio.run(slow())
    assert time.monotonic() - started < 1.0
    assert seen == ["cancelled"]
    assert isinstance(exceeded.value, TimeoutError)
    assert exceeded.value.abandoned is False
    assert "slow" in str(exceeded.value)


def test_fast_coroutine_returns_its_value_and_own_timeout_errors_pass_through():
    timeout = Timeout(1.0)

    async def fast(x: int) -> int:
        return x * 2

    async def own_timeout() -> None:
        raise TimeoutError("socket read timed out")

    assert asyncio.run(timeout.call(fast, 21)) == 42
    with pytest.raises(TimeoutError, match="socket read") as raised:
        asyncio.run(timeout.call(own_timeout))
    assert not isinstance(raised.value, TimeoutExceeded)


def test_async_with_block_is_cancelled_and_concurrent_scopes_are_independent():
    timeout = Timeout(0.05, name="inventory")

    async def guarded(seconds: float) -> str:
        async with timeout:
            await asyncio.sleep(seconds)
        return "done"

    async def scenario() -> list:
        return await asyncio.gather(guarded(0), guarded(5), return_exceptions=True)

    fast, slow = asyncio.run(scenario())
    assert fast == "done"
    assert isinstance(slow, TimeoutExceeded)
    assert "inventory timed out after 0.05s" in str(slow)
    assert timeout._scopes == {}


def test_slow_function_is_abandoned_not_stopped():
    release = threading.Event()
    finished = threading.Event()

    @Timeout(0.05)
    def slow() -> str:
        release.wait(5)
        finished.set()
        return "late"

    started = time.monotonic()
    with pytest.raises(TimeoutExceeded) as exceeded:
        slow()
    assert time.monotonic() - started < 1.0
    assert exceeded.value.abandoned is True
    assert not finished.is_set()  # still running in its thread
    release.set()
    assert finished.wait(5)  # ...and it ran to its end


def test_function_result_error_and_context_pass_through_the_thread():
    timeout = Timeout(10.0)

    def read_context() -> str:
        return request_id.get()

    def broken() -> None:
        raise KeyError("sku-42")

    token = request_id.set("req-7")
    try:
        assert timeout.call(read_context) == "req-7"
    finally:
        request_id.reset(token)
    with pytest.raises(KeyError, match="sku-42"):
        timeout.call(broken)


def test_sync_with_block_is_refused_with_an_explanation():
    with pytest.raises(TypeError, match="cannot be interrupted"), Timeout(1.0):
        pass


def test_seconds_must_be_positive():
    with pytest.raises(ValueError, match="must be > 0"):
        Timeout(0)
