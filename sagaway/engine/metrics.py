"""The engine's measurements: hooks the engine calls, and the recorder that keeps them as
per-minute buckets in the store (where `sagaway.observe` reads them)."""

from __future__ import annotations

import atexit
import bisect
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from sagaway import _clock
from sagaway.errors import StoreUnavailable
from sagaway.store.base import MetricBucket

__all__ = [
    "LATENCY_BUCKETS",
    "EngineMetrics",
    "GuardedMetrics",
    "MetricsFanout",
    "MinuteRecorder",
    "labels",
]

log = logging.getLogger("sagaway")

# Upper bounds (seconds) of the step latency histogram, as Prometheus' `le` labels.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def labels(**values: str) -> str:
    """Labels as stored: `key=value` pairs sorted by key, comma-separated."""
    return _joined(tuple(sorted(values.items())))


@functools.lru_cache(maxsize=4096)
def _joined(pairs: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{key}={value}" for key, value in pairs)


@functools.lru_cache(maxsize=4096)
def _latency_labels(saga: str, step: str, seconds_bucket: int) -> tuple[str, str, str]:
    bound = LATENCY_BUCKETS[seconds_bucket] if seconds_bucket < len(LATENCY_BUCKETS) else None
    return (
        labels(saga=saga, step=step, outcome="ok"),
        labels(saga=saga, step=step, outcome="error"),
        labels(saga=saga, step=step, le="+Inf" if bound is None else str(bound)),
    )


class EngineMetrics:
    """Receives what the engine measures. This base records nothing; subclass it and pass
    it as `App(metrics=...)` to observe runs live. Methods are called from worker threads
    and must be quick and thread-safe."""

    def started(self, saga: str) -> None:
        """A run was created."""

    def finished(self, saga: str, status: str, seconds: float) -> None:
        """A run ended with `status`, `seconds` after it was created."""

    def step_finished(self, saga: str, step: str, seconds: float, ok: bool) -> None:
        """One try of a step (or compensation) body ended."""

    def retried(self, saga: str, step: str) -> None:
        """A step or compensation will be tried again."""

    def compensating(self, saga: str) -> None:
        """A run began (or resumed) unwinding."""

    def compensated_step(self, saga: str, step: str) -> None:
        """One compensation completed."""

    def escalated(self, saga: str, step: str | None) -> None:
        """A run needs a person (a compensation or post-pivot step gave up)."""

    def parked(self, saga: str, step: str) -> None:
        """A step was refused by its breaker, rate limit or bulkhead and its run parked."""

    def suspended(self, saga: str) -> None:
        """A run parked until a signal or a timer."""

    def breaker_transition(self, breaker: str, old: str, new: str) -> None:
        """A step's circuit breaker changed state."""

    def message_handled(self, group: str, seconds: float, ok: bool) -> None:
        """One try of a consumer's handler ended (`ok` False: it raised)."""

    def message_retried(self, group: str) -> None:
        """A message will be handed to its group again after a failed try."""

    def message_dead(self, group: str) -> None:
        """A message's retries were spent: it went to the group's dead letters."""


_HOOKS = [name for name in vars(EngineMetrics) if not name.startswith("_")]


class MetricsFanout(EngineMetrics):
    """Passes every measurement to each of several `EngineMetrics`."""

    def __init__(self, targets: Sequence[EngineMetrics]) -> None:
        self.targets = list(targets)
        for name in _HOOKS:
            setattr(self, name, self._fan(name))

    def _fan(self, name: str) -> Callable[..., None]:
        calls = [getattr(target, name) for target in self.targets]

        def fan(*args: Any) -> None:
            for call in calls:
                call(*args)

        return fan


class GuardedMetrics(EngineMetrics):
    """Passes measurements to an observer of the user's, logging (not raising) its errors:
    a failing observer must never change how a saga runs."""

    def __init__(self, target: EngineMetrics) -> None:
        self.target = target
        for name in _HOOKS:
            setattr(self, name, self._guard(getattr(target, name), name))

    @staticmethod
    def _guard(call: Callable[..., None], name: str) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                call(*args)
            except Exception:
                log.warning("sagaway metrics observer failed in %s()", name, exc_info=True)

        return guarded


class MinuteRecorder(EngineMetrics):
    """Aggregates measurements per minute in memory and writes them to the store every
    `flush_every` seconds (and on `flush()`), as (name, labels, minute, count, sum, min,
    max) buckets that every process adds to. A failed write keeps the buckets for the next
    try, so a store outage delays metrics but does not lose them. `prune(stop)`, if given, is
    called from the flusher every `prune_every` seconds (first at the first flush) to
    delete buckets past their retention; it should return early once `stop()` is true."""

    def __init__(
        self,
        write: Callable[[list[MetricBucket]], None],
        flush_every: float = 2.0,
        sample: Callable[[], list[tuple[str, str, float]]] | None = None,
        prune: Callable[[Callable[[], bool]], object] | None = None,
        prune_every: float = 3600.0,
    ) -> None:
        self._write = write
        self._sample = sample
        self._prune = prune
        self.prune_every = prune_every
        self.flush_every = flush_every
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, int], list[float]] = {}
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()

    def observe(self, name: str, label: str, value: float = 1.0) -> None:
        """Fold one observation into the current minute's bucket."""
        key = (name, label, int(_clock.wall() // 60))
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                self._buckets[key] = [1, value, value, value]
            else:
                bucket[0] += 1
                bucket[1] += value
                if value < bucket[2]:
                    bucket[2] = value
                if value > bucket[3]:
                    bucket[3] = value
            if self._flusher is None:
                self._start()

    def _start(self) -> None:
        self._flusher = threading.Thread(target=self._loop, name="sagaway-metrics", daemon=True)
        self._flusher.start()
        _UNCLOSED.add(self)

    def _loop(self) -> None:
        next_prune = time.monotonic()  # the first prune runs at the first flush
        while not self._stop.wait(self.flush_every):
            self.flush()
            if self._prune is not None and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self.prune_every
                try:
                    self._prune(self._stop.is_set)  # a long prune gives way to close()
                except StoreUnavailable:
                    log.debug("sagaway metrics: store closed while pruning", exc_info=True)
                except Exception:
                    log.warning("sagaway metrics: pruning old buckets failed", exc_info=True)

    def flush(self) -> None:
        """Write the buckets gathered so far (and a sample of the gauges) to the store."""
        if self._sample is not None:
            try:
                for name, label, value in self._sample():
                    self.observe(name, label, value)
            except Exception:
                log.debug("sagaway metrics: sampling gauges failed", exc_info=True)
        with self._lock:
            buckets, self._buckets = self._buckets, {}
        if not buckets:
            return
        rows = [(n, lab, m, int(b[0]), b[1], b[2], b[3]) for (n, lab, m), b in buckets.items()]
        try:
            self._write(rows)
        except Exception as exc:
            # The store says once that it is unavailable; anything else is worth a trace.
            log.log(
                logging.DEBUG if isinstance(exc, StoreUnavailable) else logging.WARNING,
                "sagaway metrics: writing %d bucket(s) failed; kept for the next try",
                len(rows),
                exc_info=True,
            )
            with self._lock:
                for n, lab, m, count, total, low, high in rows:
                    key = (n, lab, m)
                    bucket = self._buckets.setdefault(key, [0, 0.0, low, high])
                    bucket[0] += count
                    bucket[1] += total
                    bucket[2], bucket[3] = min(bucket[2], low), max(bucket[3], high)

    def close(self) -> None:
        """Stop the flusher and write what is left."""
        _UNCLOSED.discard(self)
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(5)
        self.flush()

    # --- the engine's hooks ----------------------------------------------------------------
    def started(self, saga: str) -> None:
        self.observe("runs_started", labels(saga=saga))

    def finished(self, saga: str, status: str, seconds: float) -> None:
        self.observe("runs_finished", labels(saga=saga, status=status), seconds)

    def step_finished(self, saga: str, step: str, seconds: float, ok: bool) -> None:
        bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        ok_labels, error_labels, bound_labels = _latency_labels(saga, step, bucket)
        self.observe("step_seconds", ok_labels if ok else error_labels, seconds)
        self.observe("step_seconds_le", bound_labels)

    def retried(self, saga: str, step: str) -> None:
        self.observe("retries", labels(saga=saga, step=step))

    def compensated_step(self, saga: str, step: str) -> None:
        self.observe("compensations", labels(saga=saga, step=step))

    def escalated(self, saga: str, step: str | None) -> None:
        self.observe("escalations", labels(saga=saga, step=step or "-"))

    def parked(self, saga: str, step: str) -> None:
        self.observe("parked", labels(saga=saga, step=step))

    def breaker_transition(self, breaker: str, old: str, new: str) -> None:
        self.observe("breaker_transitions", labels(breaker=breaker, old=old, new=new))

    def message_handled(self, group: str, seconds: float, ok: bool) -> None:
        outcome = "ok" if ok else "error"
        self.observe("messages_handled", labels(group=group, outcome=outcome), seconds)

    def message_retried(self, group: str) -> None:
        self.observe("messages_retried", labels(group=group))

    def message_dead(self, group: str) -> None:
        self.observe("messages_dead", labels(group=group))


# Recorders whose App was not closed: a web or cron process that only starts runs and exits
# would otherwise lose the last seconds of measurements (its `runs_started`, say), and an
# alarm on them would fire falsely.
_UNCLOSED: weakref.WeakSet[MinuteRecorder] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for recorder in list(_UNCLOSED):
        try:
            recorder.flush()
        except Exception:  # the interpreter is going away: never fail its exit
            log.debug("sagaway metrics: flush at exit failed", exc_info=True)
