"""A PostgreSQL server of the test's own, to restart, stop and cut off at will.

The shared server on 127.0.0.1:5432 serves every other test suite on this machine: fault
tests never touch it. `PostgresServer` runs `initdb` into a temporary directory with the
binaries of /usr/lib/postgresql/*/bin and starts the server on a free port of 127.0.0.1 with
trust authentication. As root (CI) the server runs as the `postgres` OS user, which owns the
data directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

__all__ = ["PostgresServer", "free_port", "postgres_binaries"]


def postgres_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name.split(".")[0]),
    )
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in `root`, listening on 127.0.0.1:`port`."""

    def __init__(self, root: Path) -> None:
        binaries = postgres_binaries()
        if binaries is None:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        self.bin = binaries
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = free_port()
        self._user = "postgres" if os.geteuid() == 0 else None
        root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{root}'\nmax_connections = 200\n"
                "fsync = off\nshared_buffers = 32MB\nlog_min_messages = warning\n"
            )

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (roll back and disconnect), `immediate` (like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast", down: float = 0.0) -> None:
        """Stop the server with `mode`, stay down `down` seconds, start it again."""
        self.stop(mode)
        time.sleep(down)
        self.start()

    def destroy(self) -> None:
        """Stop the server if it runs and delete its files."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- use ---------------------------------------------------------------------------------
    def url(self, port: int | None = None, **query: str) -> str:
        """A store URL on a schema of its own (through a proxy when `port` is given)."""
        query.setdefault("schema", f"t_{uuid.uuid4().hex[:12]}")
        text = "&".join(f"{key}={value}" for key, value in query.items())
        return f"postgresql://postgres@127.0.0.1:{port or self.port}/postgres?{text}"

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        """Run one statement as the superuser; return its rows."""
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def backends(self, application: str = "sagaway") -> list[tuple[int, str]]:
        """(pid, query) of the client connections with this application_name."""
        return self.sql(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s",
            (application,),
        )

    def terminate(self, pid: int) -> bool:
        """pg_terminate_backend(pid): the connection is closed under its client."""
        with contextlib.suppress(Exception):
            return bool(self.sql("SELECT pg_terminate_backend(%s)", (pid,))[0][0])
        return False
