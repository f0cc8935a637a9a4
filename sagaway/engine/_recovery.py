"""Recovery of dead workers' runs.

A worker's identity (`owner`) is `host:pid:start:nonce`, where `host` names the machine,
its boot and its process namespace. A run whose lease expires is due again and any worker
claims it. A worker on the same host (same boot, same process namespace) can tell at once
that an owner's process is gone (its pid no longer runs with the same start time, or is a
zombie) and makes that owner's runs due immediately, without waiting for the lease.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket

from sagaway.store.base import Store

__all__ = ["forget_owner", "live_owner", "new_owner", "owner_is_dead", "recover_dead_owners"]

log = logging.getLogger("sagaway")

_PROC = os.path.exists("/proc/self/stat")


def _host_identity() -> str:
    """The host name, plus (on Linux) the boot and the process namespace: two containers
    sharing a host name but not their pids must not judge each other's workers."""
    parts = [socket.gethostname().replace(":", "_")]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip()[:8])
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return "/".join(parts)


_HOST = _host_identity()
_LIVE_OWNERS: set[str] = set()  # workers alive in this process


def _start_ticks(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot), "0" when it runs but the
    time cannot be read, None if it is gone or a zombie."""
    if _PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            # The command name (field 2) may contain spaces and parentheses: split after it.
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields and fields[0] in ("Z", "X"):
                return None  # killed, not yet reaped by its parent: it runs no more
            return fields[19] if len(fields) > 19 else "0"
        except FileNotFoundError:
            return None
        except OSError:
            pass  # e.g. hidepid: fall back to asking the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, owned by someone else
    return "0"


def new_owner() -> str:
    """A fresh worker identity for this process."""
    pid = os.getpid()
    return f"{_HOST}:{pid}:{_start_ticks(pid) or '0'}:{secrets.token_hex(3)}"


def live_owner(owner: str) -> None:
    """A worker of this process started: its runs are not to be taken over."""
    _LIVE_OWNERS.add(owner)


def forget_owner(owner: str) -> None:
    """A worker of this process stopped: runs it still owns may be taken over at once."""
    _LIVE_OWNERS.discard(owner)


def owner_is_dead(owner: str) -> bool:
    """True when `owner` is a worker on this host whose process (or, in this process,
    whose worker) is gone. Owners on other hosts are never judged: their leases expire."""
    try:
        host, pid_text, start, _ = owner.rsplit(":", 3)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != _HOST:
        return False
    if pid == os.getpid():
        return owner not in _LIVE_OWNERS
    now_start = _start_ticks(pid)
    return now_start is None or (start != "0" and now_start != "0" and now_start != start)


def recover_dead_owners(store: Store, me: str) -> int:
    """Make the runs of dead workers on this host due now; return how many."""
    count = 0
    for owner in store.owners():
        if owner != me and owner_is_dead(owner):
            with contextlib.suppress(Exception):
                count += store.expire_owner(owner, store.now())
    if count:
        log.info("taking over %d run(s) of worker(s) that died", count)
    return count
