"""Workers: claim due runs, execute them on a pool of threads, keep their leases alive, and
take over the runs of workers that died.

A worker's identity (`owner`) is `host:pid:start:nonce`, where `host` names the machine,
its boot and its process namespace. A heartbeat every `lease / 3` seconds renews the leases
of the runs the worker is executing (and only those: a run it stopped executing after an
error sees its lease expire); a run whose lease expires is due again and any worker claims
it. A worker on the same host (same boot, same process namespace) can tell at once that an
owner's process is gone (its pid no longer runs with the same start time) and makes that
owner's runs due immediately, without waiting for the lease.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sagaway.engine.execution import RunExecution
from sagaway.store.base import Claim

if TYPE_CHECKING:
    from sagaway.engine.app import App, Completion

__all__ = ["Worker", "owner_is_dead"]

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
# When the store announces due runs (PostgreSQL's LISTEN/NOTIFY), polling only covers a lost
# notification, so it can be rare.
NOTIFIED_POLL = 1.0
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


def _new_owner() -> str:
    pid = os.getpid()
    return f"{_HOST}:{pid}:{_start_ticks(pid) or '0'}:{secrets.token_hex(3)}"


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


class Worker:
    """Executes runs of `app` on `concurrency` threads."""

    def __init__(
        self,
        app: App,
        concurrency: int = 32,
        lease: float = 10.0,
        poll_interval: float = 0.1,
        recovery_interval: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if lease <= 0:
            raise ValueError(f"lease must be positive seconds, got {lease}")
        self.app = app
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.recovery_interval = recovery_interval
        self.owner = _new_owner()
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._backlog = False
        # Runs dispatched to this worker and not yet done: only their leases are renewed, so
        # a run whose execution or hand-back failed half-way is freed when its lease ends.
        self._inflight: set[str] = set()
        self._queue: queue.SimpleQueue[Completion | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._unwatch: Callable[[], None] | None = None
        self.executed = 0
        self.recovered = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the execution threads, the scheduler and the heartbeat."""
        _LIVE_OWNERS.add(self.owner)
        self._unwatch = self.app.store.on_wake(self.wake)
        for i in range(self.concurrency):
            self._spawn(self._execute_loop, f"sagaway-exec-{i}")
        self._spawn(self._schedule_loop, "sagaway-scheduler")
        self._spawn(self._heartbeat_loop, "sagaway-heartbeat")

    def _spawn(self, target: object, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop claiming; let executing runs reach their next step boundary and hand them
        back (they are due again at once). Returns True if every run was handed back."""
        self.stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads[self.concurrency :]:  # the scheduler and the heartbeat
            thread.join(max(0.0, deadline - time.monotonic()))
        # No claim is under way now: every run counted in _active is queued or executing.
        with self._idle:
            while self._active > 0 and time.monotonic() < deadline:
                self._idle.wait(0.05)
            clean = self._active == 0
        for _ in range(self.concurrency):
            self._queue.put(None)
        for thread in self._threads[: self.concurrency]:
            thread.join(max(0.0, deadline - time.monotonic()) if clean else 0.1)
        while True:  # anything still queued will not run here: let its waiters know
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not None and left.take():
                self.app.executed(left.claim.run.id, left, None)
        if self._unwatch is not None:
            self._unwatch()
        _LIVE_OWNERS.discard(self.owner)
        return clean

    # --- capacity ----------------------------------------------------------------------------
    def reserve(self) -> bool:
        """Take an execution slot for a run started in this process, if one is free."""
        with self._lock:
            if self.stopping.is_set() or self._active >= self.concurrency:
                return False
            self._active += 1
            return True

    def unreserve(self) -> None:
        """Give back a slot taken by `reserve` that was not used."""
        self._done()

    def dispatch(self, claim: Claim) -> None:
        """Execute a run already claimed for this worker, in a reserved slot."""
        completion = self.app.executing(claim.run.id)
        completion.claim = claim
        with self._lock:
            self._inflight.add(claim.run.id)
        self._queue.put(completion)

    def execute_here(self, completion: Completion) -> bool:
        """Execute a dispatched run in the calling thread if no worker thread has taken it
        yet (a caller about to wait for its result saves two thread hand-offs)."""
        if self.stopping.is_set() or not completion.take():
            return False
        self._execute(completion)
        return True

    def _execute(self, completion: Completion) -> None:
        claim = completion.claim
        try:
            RunExecution(self, claim).execute(completion)
            self.executed += 1
        except Exception:
            log.exception("run %s: unexpected error in the engine", claim.run.id)
        finally:
            with self._lock:
                self._inflight.discard(claim.run.id)
            self._done()

    def wake(self) -> None:
        """Look for due runs now (a run was started, signalled or redriven)."""
        self._wake.set()

    def _done(self) -> None:
        with self._idle:
            self._active -= 1
            if self.stopping.is_set():
                self._idle.notify_all()
        if self._backlog:
            self._wake.set()  # due runs were left waiting for a slot

    # --- threads -----------------------------------------------------------------------------
    def _execute_loop(self) -> None:
        while True:
            completion = self._queue.get()
            if completion is None:
                return
            if completion.take():  # else the caller of Run.result took it
                self._execute(completion)

    def _schedule_loop(self) -> None:
        store = self.app.store
        idle = self.poll_interval
        if self._unwatch is not None:
            idle = max(idle, NOTIFIED_POLL)
        while not self.stopping.is_set():
            self._wake.clear()
            timeout = idle
            try:
                with self._lock:  # with _done's decrement: no slot freed goes unnoticed
                    free = self.concurrency - self._active
                    self._backlog = free <= 0
                due = store.next_due() if free > 0 else None
                now = time.time()
                if due is not None and due <= now:
                    # Slots are not held while claiming, so a run started in this process
                    # meanwhile still gets one; a few claims may then wait in the queue.
                    claims = store.claim(self.owner, free, now, now + self.lease)
                    with self._lock:
                        self._active += len(claims)
                    for claim in claims:
                        if claim.taken_over_from is not None:
                            self.recovered += 1
                        self.dispatch(claim)
                    if len(claims) == free:
                        self._backlog = True
                    if claims:
                        continue  # there may be more due runs
                elif due is not None:
                    timeout = min(timeout, due - now)
            except Exception:
                log.exception("sagaway scheduler: claiming runs failed; retrying")
                timeout = 1.0
            self._wake.wait(timeout)

    def _heartbeat_loop(self) -> None:
        store = self.app.store
        beat_every = self.lease / 3
        last_beat = last_recovery = time.time()
        with contextlib.suppress(Exception):
            self.recover_dead_owners()  # a restarted worker takes over at once
        while not self.stopping.wait(min(beat_every, self.recovery_interval, 0.5)):
            now = time.time()
            try:
                if now - last_beat >= beat_every:
                    with self._lock:
                        inflight = list(self._inflight)
                    store.heartbeat(self.owner, inflight, now + self.lease)
                    last_beat = now
                if now - last_recovery >= self.recovery_interval:
                    self.recover_dead_owners()
                    last_recovery = now
            except Exception:
                log.exception("sagaway heartbeat failed; retrying")

    def recover_dead_owners(self) -> int:
        """Make the runs of dead workers on this host due now; return how many."""
        count = 0
        store = self.app.store
        for owner in store.owners():
            if owner != self.owner and owner_is_dead(owner):
                with contextlib.suppress(Exception):
                    count += store.expire_owner(owner, time.time())
        if count:
            log.info("taking over %d run(s) of worker(s) that died", count)
            self._wake.set()
        return count
