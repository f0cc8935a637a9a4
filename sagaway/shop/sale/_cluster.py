"""The processes of a sale: the three providers, the shop (`sagaway shop serve`) and its
workers, each a child process with its output in `<out>/logs/<name>.log`.

The sale starts the workers itself (the shop with `--workers 0`) so that it can SIGKILL one and
start it again; every process is stopped with SIGTERM, then SIGKILL, when the sale ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sagaway.errors import SagawayError

__all__ = ["PROVIDERS", "Child", "Cluster", "ClusterError"]

PROVIDERS = ("payment", "inventory", "mail")
READY_TIMEOUT = 60.0  # seconds a process may take to say it is ready


class ClusterError(SagawayError):
    """A process of the sale did not start; the message names it and its log file."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Child:
    """One child process and its log file."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    ready_text: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until its log says `ready_text`. Raises ClusterError."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                text = self.log.read_bytes()[offset:].decode(errors="replace")
                if self.ready_text in text:
                    return
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        except BaseException:  # Ctrl-C while waiting: no process is left behind
            self.stop()
            raise
        code = self.process.poll()
        self.stop()
        why = (
            f"it exited with status {code}"
            if code is not None
            else f"no {self.ready_text!r} within {READY_TIMEOUT:.0f} s"
        )
        tail = self.log.read_bytes()[offset:].decode(errors="replace")[-2000:]
        raise ClusterError(f"{self.name} did not start ({why}); its output, in {self.log}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is handed back."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Cluster:
    """Providers, shop and workers for one sale, on `db_url`, writing under `out`."""

    db_url: str
    out: Path
    workers: int = 1
    shedding: bool = True
    stock: dict[str, int] | None = None
    providers: dict[str, Child] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    shop: Child | None = None
    worker_children: list[Child] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        """Where the processes' output and the shop's access log go."""
        return self.out / "logs"

    @property
    def access_log(self) -> Path:
        """The shop's ALB-format access log."""
        return self.logs / "access.log"

    @property
    def shop_url(self) -> str:
        """The shop's base URL."""
        return self.urls["shop"]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SAGAWAY_DB"] = self.db_url
        for name in PROVIDERS:
            if name in self.urls:
                env[f"SAGAWAY_SHOP_{name.upper()}_URL"] = self.urls[name]
        return env

    def _sagaway(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "sagaway.cli", *args]

    def start(self) -> None:
        """Start everything, providers first; on failure stop what started and raise."""
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            for name in PROVIDERS:
                port = free_port()
                argv = [sys.executable, "-m", "sagaway.shop.providers", name, "--port", str(port),
                        "--db", str(self.out / f"{name}.db")]  # fmt: skip
                if name == "inventory" and self.stock:
                    argv += ["--stock", ",".join(f"{k}={v}" for k, v in self.stock.items())]
                child = Child(
                    name,
                    argv,
                    self.logs / f"{name}.log",
                    self._env(),
                    f"listening on http://127.0.0.1:{port}",
                )  # fmt: skip
                child.start()
                self.providers[name] = child
                self.urls[name] = f"http://127.0.0.1:{port}"
            port = free_port()
            argv = self._sagaway(
                "shop", "serve", "--db", self.db_url, "--port", str(port),
                "--workers", "0", "--log-dir", str(self.logs),
                "--payment-url", self.urls["payment"],
                "--inventory-url", self.urls["inventory"],
                "--mail-url", self.urls["mail"],
            )  # fmt: skip
            if not self.shedding:
                argv.append("--no-shedding")
            self.shop = Child(
                "shop", argv, self.logs / "shop.log", self._env(), f"http://127.0.0.1:{port}"
            )
            self.shop.start()
            self.urls["shop"] = f"http://127.0.0.1:{port}"
            for i in range(self.workers):
                child = Child(
                    f"worker-{i + 1}",
                    self._sagaway("worker", "sagaway.shop.flows:app"),
                    self.logs / f"worker-{i + 1}.log",
                    self._env(),
                    " started: ",
                )
                child.start()
                self.worker_children.append(child)
        except BaseException:
            self.stop()
            raise

    def kill_worker(self) -> Child:
        """SIGKILL the first worker; return it (restart it with `Child.start`)."""
        child = self.worker_children[0]
        child.kill()
        return child

    def stop(self) -> None:
        """Stop workers, shop and providers, in that order."""
        for child in [*self.worker_children, self.shop, *self.providers.values()]:
            if child is not None:
                child.stop()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
