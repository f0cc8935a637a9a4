"""Real worker processes for crash tests."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """`sagaway worker tests.apps.crashable:app` (or another `target`) in a child process."""

    def __init__(
        self,
        url: str,
        log: Path,
        lease: float = 30.0,
        concurrency: int = 8,
        step_seconds: float | None = None,
        env_extra: dict[str, str] | None = None,
        target: str = "tests.apps.crashable:app",
    ) -> None:
        env = dict(os.environ)
        env.update(
            SAGAWAY_DB=url,
            SAGAWAY_TEST_LOG=str(log),
            SAGAWAY_TEST_LEASE=str(lease),
            PYTHONPATH=str(ROOT),
        )
        if step_seconds is not None:
            env["SAGAWAY_TEST_STEP_SECONDS"] = str(step_seconds)
        env.update(env_extra or {})
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "sagaway.cli", "worker", target,
                "--concurrency", str(concurrency),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

        self.output = ""
        self._started = threading.Event()
        # Read from the start on a thread: a worker logging more than a pipe holds must not
        # block on it, and lines that arrive together (a takeover logged before the start)
        # are all seen, which select() on the pipe would not tell of once one is buffered.
        self._drain = threading.Thread(target=self._read_on, daemon=True)
        self._drain.start()
        self._ready()

    def _read_on(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self.output += line.decode()
            if b" started: " in line:
                self._started.set()

    def _ready(self, timeout: float = 60.0) -> None:
        """Wait until the worker says it started (it logs one line, then little else)."""
        deadline = time.monotonic() + timeout
        while not self._started.wait(0.05):
            if time.monotonic() > deadline or not self._drain.is_alive():
                raise RuntimeError(f"worker did not start: {self.output}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no handing back of leases."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> str:
        """SIGTERM and wait; return what the worker printed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._drain.join(10)
        return self.output


def body_counts(log: Path) -> collections.Counter:
    """How often each (body, order) ran, from the log the test app writes."""
    counts: collections.Counter = collections.Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            name, order, _pid, _key = line.split()
            counts[(name, order)] += 1
    return counts


def read_bodies(log: Path) -> dict[tuple[str, int], list[tuple[str, str]]]:
    """(run id, position) -> [(pid, start time)] of every step body of tests.apps.stress
    that started."""
    bodies: dict[tuple[str, int], list[tuple[str, str]]] = collections.defaultdict(list)
    for line in log.read_text().splitlines():
        run_id, position, pid, started = line.split()[:4]
        bodies[(run_id, int(position))].append((pid, started))
    return bodies


def check_bodies(store, runs, log: Path, steps: int, same_clock: bool = True) -> int:
    """Every run's journal holds `steps` recorded steps; no step body started after its
    completion was recorded, and the completion recorded is that of the last body to start
    (a late write by a worker that had lost the run would have put an earlier one back).
    Returns how many bodies ran again (their first run's completion was never recorded).
    Without `same_clock` (the workers' clock was stepped) recorded times are not compared."""
    import json

    bodies = read_bodies(log)
    reruns = 0
    for run in runs:
        entries = [e for e in store.journal(run.id) if e.kind == "step"]
        assert [(e.phase, e.position, e.kind, e.status) for e in entries] == [
            (0, p, "step", "ok") for p in range(steps)
        ], run.id
        for entry in entries:
            starts = bodies[(run.id, entry.position)]
            assert starts, f"run {run.id} step {entry.position} recorded but never ran"
            latest = max(starts, key=lambda s: float(s[1]))
            assert not same_clock or float(latest[1]) <= entry.finished_at, (run.id, entry)
            assert json.loads(entry.result) == " ".join(latest), (run.id, entry, starts)
            reruns += len(starts) - 1
    return reruns


def handled_messages(log: Path) -> collections.Counter:
    """How often the group `audit` of tests.apps.stress handled each message."""
    path = Path(f"{log}.handled")
    lines = path.read_text().splitlines() if path.exists() else []
    return collections.Counter(line.split()[0] for line in lines)


def wait_handled(log: Path, count: int, timeout: float = 60) -> collections.Counter:
    """Wait until `count` distinct messages were handled; return the counts."""
    deadline = time.monotonic() + timeout
    while len(handled := handled_messages(log)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(handled)} of {count} messages handled")
        time.sleep(0.05)
    return handled
