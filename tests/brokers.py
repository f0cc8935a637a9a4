"""Real brokers for the bridge tests: RabbitMQ on 127.0.0.1:5672 (guest/guest) and NATS with
JetStream on 127.0.0.1:4222 (.ci/run starts both), plus a NATS server of a test's own that it
can stop and start again on the same store directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from sagaway import Retry
from tests.conftest import FAST, require

RABBITMQ_URL = os.environ.get("SAGAWAY_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("SAGAWAY_TEST_NATS", "nats://127.0.0.1:4222")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- RabbitMQ ------------------------------------------------------------------------------
def require_rabbitmq() -> None:
    """Skip (fail under CI) unless the test RabbitMQ answers."""
    try:
        import aio_pika  # noqa: F401
    except ImportError as exc:
        require(False, f"aio-pika is not installed ({exc}): pip install -e '.[dev]'")
    problem = None
    try:
        asyncio.run(_rabbit(lambda channel: asyncio.sleep(0)))
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    require(
        problem is None,
        f"no RabbitMQ at {RABBITMQ_URL} ({problem}): start it with `rabbitmq-server -detached` "
        "(.ci/run does)",
    )


async def _rabbit(work):
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    try:
        channel = await connection.channel()
        return await work(channel)
    finally:
        await connection.close()


@contextmanager
def rabbit_queue(name: str | None = None):
    """A fresh durable queue (reached through the default exchange by its name), deleted
    afterwards."""
    require_rabbitmq()
    name = name or unique("sagaway-test")

    async def declare(channel):
        await channel.declare_queue(name, durable=True)

    asyncio.run(_rabbit(declare))
    try:
        yield name
    finally:

        async def delete(channel):
            await channel.queue_delete(name)

        asyncio.run(_rabbit(delete))


def rabbit_send(queue: str, messages: list[tuple[str | None, bytes, dict]]) -> None:
    """Publish (message_id, body, headers) to `queue`, persistent, confirmed."""
    import aio_pika

    async def send(channel):
        for message_id, body, headers in messages:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    message_id=message_id,
                    headers=headers,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=queue,
            )

    asyncio.run(_rabbit(send))


def rabbit_drain(queue: str) -> list:
    """Every message waiting in `queue`, taken off it (acknowledged)."""

    async def drain(channel):
        q = await channel.get_queue(queue)
        taken = []
        while (message := await q.get(fail=False)) is not None:
            await message.ack()
            taken.append(message)
        return taken

    return asyncio.run(_rabbit(drain))


def rabbit_depth(queue: str) -> int:
    """How many messages wait in `queue`."""

    async def depth(channel):
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count

    return asyncio.run(_rabbit(depth))


def restart_rabbitmq() -> None:
    """Stop RabbitMQ's application and start it again (the node keeps running, durable
    queues and persistent messages survive)."""
    require(
        shutil.which("rabbitmqctl") is not None,
        "no rabbitmqctl to restart RabbitMQ with: apt-get install rabbitmq-server (.ci/run does)",
    )
    for verb in ("stop_app", "start_app", "await_startup"):
        subprocess.run(["rabbitmqctl", verb], check=True, capture_output=True, timeout=120)


# --- NATS ------------------------------------------------------------------------------------
def require_nats(url: str = NATS_URL) -> None:
    """Skip (fail under CI) unless NATS with JetStream answers at `url`."""
    try:
        import nats  # noqa: F401
    except ImportError as exc:
        require(False, f"nats-py is not installed ({exc}): pip install -e '.[dev]'")
    problem = None
    try:
        asyncio.run(_jetstream(url, lambda js: js.account_info()))
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    require(
        problem is None,
        f"no NATS with JetStream at {url} ({problem}): start `nats-server -js` (.ci/run does)",
    )


async def _jetstream(url, work):
    import nats

    client = await nats.connect(url, allow_reconnect=False, connect_timeout=3)
    try:
        return await work(client.jetstream())
    finally:
        await client.close()


@contextmanager
def jetstream_stream(url: str = NATS_URL):
    """A fresh file-stored stream taking the subjects `<name>.>`, deleted afterwards:
    yields (stream name, subject prefix)."""
    require_nats(url)
    name = unique("SAGAWAY").replace("-", "_").upper()
    prefix = name.lower()
    asyncio.run(_jetstream(url, lambda js: js.add_stream(name=name, subjects=[f"{prefix}.>"])))
    try:
        yield name, prefix
    finally:
        try:
            asyncio.run(_jetstream(url, lambda js: js.delete_stream(name)))
        except Exception:  # a private server is already gone with its directory
            pass


def jetstream_publish(stream_prefix: str, messages: list[tuple[str, bytes, dict]], url=NATS_URL):
    """Publish (subject suffix, body, headers) to the stream, each acked."""

    async def send(js):
        for suffix, body, headers in messages:
            await js.publish(f"{stream_prefix}.{suffix}", body, headers=headers or None)

    asyncio.run(_jetstream(url, send))


def jetstream_messages(stream: str, url: str = NATS_URL) -> list:
    """Every message stored in `stream`, in order (read by sequence, not consumed)."""

    async def read(js):
        info = await js.stream_info(stream)
        return [
            await js.get_msg(stream, seq)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
            if info.state.messages
        ]

    return asyncio.run(_jetstream(url, read))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateNats:
    """A nats-server with JetStream of this test's own, on a free port, its store in
    `directory`; `restart()` stops the process and starts it again on the same store."""

    def __init__(self, directory: Path) -> None:
        require(
            os.access(NATS_SERVER, os.X_OK),
            f"no nats-server at {NATS_SERVER}: apt-get install nats-server (.ci/run does)",
        )
        self.directory = directory
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                NATS_SERVER,
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                asyncio.run(_jetstream(self.url, lambda js: js.account_info()))
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server on port {self.port} did not come up")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
            self.process = None

    def restart(self, down_for: float = 0.5) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


# --- what both bridges' tests use -------------------------------------------------------------
@pytest.fixture(autouse=True)
def relay_targets_closed(monkeypatch):
    """Close every relay target a test created (its connection and event loop thread)."""
    from sagaway.messaging.bridges import RelayTarget

    created = []
    original = RelayTarget.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(RelayTarget, "__init__", init)
    yield
    for target in created:
        target.close()


PATIENT = Retry(attempts=None, base=0.05, cap=0.5)  # a relay that waits a broker restart out


def collect(app, topic, group="sink"):
    """A consumer of `topic` recording each message; returns the list."""
    seen, lock = [], threading.Lock()

    @app.consumer(topic, group=group, retry=FAST)
    def record(message):
        with lock:
            seen.append(message)

    return seen


def handled(app, group):
    """How many messages `group` has handled."""
    return next(g for g in app.store.groups() if g.group == group).handled


def relay_across_restart(sender, group, seen, restart, total=120):
    """Publish `total` numbered messages to orders.placed, the middle third while `restart()`
    runs, once relaying is under way; wait until the relay `group` handled them all and
    `seen` holds as many downstream."""
    from tests.conftest import wait_for

    def publish(numbers):
        for n in numbers:
            sender.publish("orders.placed", {"n": n})
            time.sleep(0.01)

    publish(range(total // 3))
    wait_for(lambda: len(seen) >= 10, what="relaying under way", timeout=20)
    during = threading.Thread(target=publish, args=(range(total // 3, 2 * total // 3),))
    during.start()
    restart()
    during.join()
    publish(range(2 * total // 3, total))
    wait_for(lambda: handled(sender, group) == total, what="the relay", timeout=60)
    wait_for(lambda: len(seen) >= total, what="every message downstream", timeout=60)
    time.sleep(0.3)  # nothing arrives twice, late
