"""Workers: claim due runs, execute them on a pool of threads, keep their leases alive, and
take over the runs of workers that died (`_recovery`).

A heartbeat every `lease / 3` seconds renews the leases of the runs the worker is executing
(and only those: a run it stopped executing after an error sees its lease expire, and a
thread never dies of what user code raises, so no run is held by a slot that does nothing).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

from sagaway.engine._clockwatch import ClockWatch
from sagaway.engine._completions import Completion
from sagaway.engine._control import is_interrupt
from sagaway.engine._execution import RunExecution
from sagaway.engine._recovery import forget_owner, live_owner, new_owner, recover_dead_owners
from sagaway.engine._runtime import Runtime
from sagaway.errors import StoreUnavailable
from sagaway.store.base import Claim

__all__ = ["Worker"]

log = logging.getLogger("sagaway")

# When the store announces due runs (PostgreSQL's LISTEN/NOTIFY), polling only covers a lost
# notification, so it can be rare.
NOTIFIED_POLL = 1.0
# The longest pause between two tries to claim while the store keeps failing.
MAX_BACKOFF = 2.0


class Worker:
    """Executes the runs of one App on `concurrency` threads (`app.launch()` makes one)."""

    def __init__(
        self,
        runtime: Runtime,
        concurrency: int = 32,
        lease: float = 10.0,
        poll_interval: float = 0.1,
        recovery_interval: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if lease <= 0:
            raise ValueError(f"lease must be positive seconds, got {lease}")
        self.runtime = runtime
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.recovery_interval = recovery_interval
        self.owner = new_owner()
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._renew = threading.Event()  # renew the leases now (the clock stepped)
        self._clock = ClockWatch(lease, runtime.store.hurry_unowned, self._renew.set)
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
        live_owner(self.owner)
        self._unwatch = self.runtime.store.on_wake(self.wake)
        for i in range(self.concurrency):
            self._spawn(self._execute_loop, f"sagaway-exec-{i}")
        self._spawn(self._schedule_loop, "sagaway-scheduler")
        self._spawn(self._heartbeat_loop, "sagaway-heartbeat")

    def _spawn(self, target: Callable[[], object], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop claiming; let executing runs reach their next step boundary and hand them
        back (they are due again at once). Returns True if every run was handed back."""
        self.stopping.set()
        self._wake.set()
        self._renew.set()
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
                self.runtime.completions.executed(left, None)
        if self._unwatch is not None:
            self._unwatch()
        forget_owner(self.owner)
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
        completion = self.runtime.completions.executing(claim)
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
            RunExecution(self.runtime, claim, self.lease, self.stopping).execute(completion)
            self.executed += 1
        except BaseException as exc:
            if is_interrupt(exc):
                raise  # Ctrl-C in the caller's thread (`Run.result` executing its own run)
            # Nothing may end an execution thread: a dead one would keep claiming runs.
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
        store = self.runtime.store
        idle = self.poll_interval
        if self._unwatch is not None:
            idle = max(idle, NOTIFIED_POLL)
        failures = 0
        while not self.stopping.is_set():
            self._wake.clear()
            timeout = idle
            try:
                with self._lock:  # with _done's decrement: no slot freed goes unnoticed
                    free = self.concurrency - self._active
                    self._backlog = free <= 0
                due = store.next_due() if free > 0 else None
                before = time.monotonic()
                now = store.now()
                # Checked with the very reading the claim uses: no claim goes by a clock
                # that stepped unnoticed.
                takeover = self._clock.check(now, before)
                if due is not None and due <= now:
                    # Slots are not held while claiming, so a run started in this process
                    # meanwhile still gets one; a few claims may then wait in the queue.
                    claims = store.claim(self.owner, free, now, now + self.lease, takeover)
                    with self._lock:
                        self._active += len(claims)
                    for claim in claims:
                        if claim.taken_over_from is not None:
                            self.recovered += 1
                        self.dispatch(claim)
                    if len(claims) == free:
                        self._backlog = True
                    if claims:
                        failures = 0
                        continue  # there may be more due runs
                    # A claim that only moved runs to their keys' queues took none, but the
                    # due runs behind them are still waiting: look again at once, as long as
                    # the earliest due run moves on.
                    after = store.next_due()
                    if after is not None and due < after <= now:
                        failures = 0
                        continue
                elif due is not None:
                    timeout = min(timeout, due - now)
                failures = 0
            except Exception as exc:
                # The store says once that it is unavailable; retry with backoff.
                failures += 1
                timeout = min(MAX_BACKOFF, 0.05 * 2**failures)
                if isinstance(exc, StoreUnavailable):
                    log.debug("sagaway scheduler: claiming runs failed; retrying", exc_info=True)
                else:
                    log.exception("sagaway scheduler: claiming runs failed; retrying")
            self._wake.wait(timeout)

    def _heartbeat_loop(self) -> None:
        store = self.runtime.store
        beat_every = self.lease / 3
        # Periods on the monotonic clock: a wall clock stepped back must not stop the beats.
        last_beat = last_recovery = time.monotonic()
        with contextlib.suppress(Exception):
            self.recover_dead_owners()  # a restarted worker takes over at once
        while not self.stopping.is_set():
            self._renew.wait(min(beat_every, self.recovery_interval, 0.5))
            if self.stopping.is_set():
                return
            renew = self._renew.is_set()
            self._renew.clear()
            mono = time.monotonic()
            try:
                if renew or mono - last_beat >= beat_every:
                    with self._lock:
                        inflight = list(self._inflight)
                    store.heartbeat(self.owner, inflight, store.now() + self.lease)
                    last_beat = mono
                if mono - last_recovery >= self.recovery_interval:
                    self.recover_dead_owners()
                    # A key's slot given back while a claim queued runs on it (two
                    # processes' transactions crossing) is found here.
                    if store.flow_sweep(store.now()):
                        self._wake.set()
                    last_recovery = mono
            except StoreUnavailable:
                log.debug("sagaway heartbeat failed; retrying", exc_info=True)
            except Exception:
                log.exception("sagaway heartbeat failed; retrying")

    def recover_dead_owners(self) -> int:
        """Make the runs of dead workers on this host due now; return how many."""
        count = recover_dead_owners(self.runtime.store, self.owner)
        if count:
            self._wake.set()
        return count
