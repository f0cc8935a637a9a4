"""`App`: where sagas and steps are declared, runs are started and controlled, and
in-process workers are launched."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from types import MappingProxyType
from typing import Any, TypeVar, overload

from sagaway._ids import time_ordered_id
from sagaway.engine import _serde as serde
from sagaway.engine._app_messaging import MessagingSurface
from sagaway.engine._check import Divergence, check_runs
from sagaway.engine._completions import Completions
from sagaway.engine._fork import create_fork
from sagaway.engine._invoke import StepInvoker
from sagaway.engine._runtime import Runtime
from sagaway.engine._schedules import Schedule, ScheduleRunner
from sagaway.engine.definitions import SagaDefinition, StepDefinition
from sagaway.engine.metrics import (
    EngineMetrics,
    GuardedMetrics,
    MetricsFanout,
    MinuteRecorder,
)
from sagaway.engine.run import Run
from sagaway.engine.shared import StoreBreakerStates, StoreRateLimits
from sagaway.engine.worker import Worker
from sagaway.errors import (
    ConfigurationError,
    IdempotencyConflict,
    InvalidRunState,
    RunNotFound,
    UnknownSaga,
)
from sagaway.messaging._hub import Messaging
from sagaway.resilience.adaptive import AdaptiveLimit
from sagaway.resilience.breaker import CircuitBreaker
from sagaway.resilience.bulkhead import Bulkhead
from sagaway.resilience.ratelimit import RateLimiter
from sagaway.resilience.retry import Retry
from sagaway.store import open_store, resolve_url
from sagaway.store.base import (
    SETTLED,
    STATUSES,
    Claim,
    ErrorRecord,
    NewRun,
    RunRecord,
    RunStatus,
    Store,
)

__all__ = ["App"]

F = TypeVar("F", bound=Callable[..., Any])


new_run_id = time_ordered_id


class App(MessagingSurface):
    """Declares sagas and steps, starts and controls runs, and runs workers.

    `App()` uses the SQLite file named by $SAGAWAY_DB, else ./sagaway.db;
    `App("sqlite:///shop.db")` or `App("postgresql://user@host/db")` names the store.
    The store is opened on first use, so declaring sagas at import time touches nothing.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        store: Store | None = None,
        concurrency: int = 32,
        lease: float = 10.0,
        poll_interval: float = 0.1,
        retry: Retry | None = None,
        compensation_retry: Retry | None = None,
        metrics: EngineMetrics | None = None,
        record_metrics: bool = True,
        metrics_retention_days: float | None = 35.0,
    ) -> None:
        self.url = store.url if store is not None else resolve_url(url)
        self._store = store
        self._store_lock = threading.Lock()
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.default_retry = retry or Retry(attempts=3, base=0.1, cap=2.0)
        self.compensation_retry = compensation_retry or Retry(attempts=10, base=0.2, cap=5.0)
        # The engine's own metrics go to the store as per-minute buckets (read them with
        # `sagaway metrics`); `metrics` adds an observer of the caller's, e.g. Prometheus.
        if metrics_retention_days is not None and not metrics_retention_days >= 1:
            # Below a day, a prune could cut into minutes other processes are still adding to.
            raise ConfigurationError(
                f"App(metrics_retention_days={metrics_retention_days!r}): give a number of "
                "days, 1 or more, or None to keep the engine's metric buckets forever"
            )
        self.metrics_retention_days = metrics_retention_days
        self.recorder = (
            MinuteRecorder(
                lambda rows: self.store.add_metrics(rows),
                sample=self._gauges,
                prune=None if metrics_retention_days is None else self.prune_metrics,
            )
            if record_metrics
            else None
        )
        guarded = GuardedMetrics(metrics) if metrics is not None else None
        observers = [m for m in (self.recorder, guarded) if m is not None]
        self.metrics: EngineMetrics = EngineMetrics()
        if len(observers) == 1:
            self.metrics = observers[0]
        elif observers:
            self.metrics = MetricsFanout(observers)
        self.sagas: dict[str, SagaDefinition] = {}
        self.steps: dict[str, StepDefinition] = {}
        self.worker: Worker | None = None
        self.schedules: dict[str, Schedule] = {}
        self._schedule_runner = ScheduleRunner(
            lambda: list(self.schedules.values()), lambda: self.store, self.start
        )
        self._invoker = StepInvoker(self.metrics)
        self._completions = Completions()
        self._messaging = Messaging(
            lambda: self.store, self._invoker, self.metrics, lease, poll_interval
        )

    # --- declarations ------------------------------------------------------------------------
    @overload
    def step(self, fn: F) -> F: ...
    @overload
    def step(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        pivot: bool = False,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | AdaptiveLimit | None = None,
        rate_limit: RateLimiter | None = None,
        deadline: float | None = None,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        pivot: bool = False,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | AdaptiveLimit | None = None,
        rate_limit: RateLimiter | None = None,
        deadline: float | None = None,
    ) -> Any:
        """Declare a step: `@app.step` or `@app.step(retry=..., timeout=..., pivot=True)`.

        Inside a saga, each call is journaled: retried on any exception by `retry`
        (default: the App's), each try bounded by `timeout` seconds, its result recorded once.
        `pivot=True` marks the point of no return: once it succeeded, later failures are
        retried and escalated, never compensated. The step's name (default: the function's
        name) identifies it in journals and must be unique in the App.

        `breaker`, `rate_limit` and `bulkhead` guard every try: while the breaker is open,
        the limiter has no token or the bulkhead no slot, the run *parks* durably (no try is
        spent, no worker thread is held for long) until a trial or a token is due. A
        `Rejected` refusal raised inside the body (a breaker the step uses itself) parks the
        same way. `deadline` bounds the parking in seconds; past it the step fails with the
        refusal, and the saga compensates as for any failure. Without a deadline a run parks
        for as long as the refusal lasts. `bulkhead` may be an `AdaptiveLimit`: each try then
        reports its outcome to it (a timed-out try is a drop), so the limit follows the
        dependency's latency.
        """

        def declare(fn: Callable[..., Any]) -> StepDefinition:
            step_name = name or fn.__name__
            if step_name in self.steps:
                existing = self.steps[step_name].fn
                raise ConfigurationError(
                    f"a step named {step_name!r} is already declared "
                    f"({existing.__module__}.{existing.__qualname__}): "
                    "give one of them another name with @app.step(name=...)"
                )
            for label, value in (("timeout", timeout), ("deadline", deadline)):
                if value is not None and value <= 0:
                    raise ConfigurationError(
                        f"step {step_name!r}: {label} must be positive seconds, got {value!r}"
                    )
            definition = StepDefinition(
                fn,
                step_name,
                retry or self.default_retry,
                timeout,
                pivot,
                breaker=breaker,
                bulkhead=bulkhead,
                rate_limit=rate_limit,
                deadline=deadline,
                compensation_retry=self.compensation_retry,
            )
            self.steps[step_name] = definition
            if breaker is not None:
                breaker.add_listener(
                    lambda t: self.metrics.breaker_transition(
                        t.breaker, str(t.from_state), str(t.to_state)
                    )
                )
            return definition

        return declare(fn) if fn is not None else declare

    def saga(self, fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Declare a saga: a plain function `fn(ctx, *args, **kwargs)` calling steps.

        Code between steps must be deterministic (use `ctx.now()`, `ctx.uuid()`) and free of
        side effects: after a crash the function runs again from the top, and recorded steps
        return their recorded results.
        """

        def declare(fn: Callable[..., Any]) -> SagaDefinition:
            saga_name = name or fn.__name__
            if saga_name in self.sagas:
                raise ConfigurationError(
                    f"a saga named {saga_name!r} is already declared: "
                    "give one of them another name with @app.saga(name=...)"
                )
            definition = SagaDefinition(fn, saga_name)
            self.sagas[saga_name] = definition
            return definition

        return declare(fn) if fn is not None else declare

    def schedule(
        self, cron: str, *, tz: str = "UTC", catch_up: str = "latest"
    ) -> Callable[[SagaDefinition], SagaDefinition]:
        """Start one run of the saga below at every tick of `cron` (five fields: minute hour
        day month weekday) in time zone `tz`, however many workers run; a `tick` parameter
        of the saga gets the tick's time. `catch_up` ("latest", "all" or "none") says which
        ticks missed while no worker ran are started. Put it above `@app.saga()`."""

        def declare(saga: SagaDefinition) -> SagaDefinition:
            if not isinstance(saga, SagaDefinition):
                raise ConfigurationError(
                    f"@app.schedule({cron!r}) decorates a saga: put it above @app.saga()"
                )
            self.schedules[saga.name] = Schedule.declare(saga, cron, tz, catch_up)
            return saga

        return declare

    # --- the store ---------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The store, opened on first use."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = open_store(self.url)
        return self._store

    @property
    def shared_breakers(self) -> StoreBreakerStates:
        """Breaker states shared through the store: `CircuitBreaker(name,
        shared=app.shared_breakers)` opens (and closes) for every worker process at once."""
        return StoreBreakerStates(lambda: self.store)

    @property
    def shared_rate_limits(self) -> StoreRateLimits:
        """Token buckets kept in the store: `RateLimiter(name, rate, per,
        state=app.shared_rate_limits)` enforces one quota across all worker processes."""
        return StoreRateLimits(lambda: self.store)

    # --- runs --------------------------------------------------------------------------------
    def _saga_name(self, saga: SagaDefinition | str) -> str:
        name = saga.name if isinstance(saga, SagaDefinition) else saga
        if name not in self.sagas:
            raise UnknownSaga(
                f"saga {name!r} is not declared in this app "
                f"(declared: {', '.join(sorted(self.sagas)) or 'none'})"
            )
        return name

    def start(
        self, saga: SagaDefinition | str, *args: Any, key: str | None = None, **kwargs: Any
    ) -> Run:
        """Create a run of `saga` with these arguments and return its handle at once.

        With `key`, starting is idempotent: the same key and the same input return the
        existing run; the same key with a different input raises IdempotencyConflict.
        Raises SerializationError if the input is not JSON data.
        """
        name = self._saga_name(saga)
        definition = self.sagas[name]
        identity = definition.identity(args, kwargs)
        what = f"the input of saga {name!r}"
        text = serde.dumps({"args": list(args), "kwargs": kwargs}, what, canonical=True)
        digest = serde.input_hash(serde.dumps(identity, what, canonical=True))
        now = self.store.now()
        new = NewRun(new_run_id(), name, key, text, digest, now)
        worker = self.worker
        reserved = worker is not None and worker.reserve()
        try:
            record, created = self.store.create_run(
                new,
                owner=worker.owner if reserved and worker else None,
                lease_until=now + self.lease,
            )
        except BaseException:
            if reserved and worker:
                worker.unreserve()
            raise
        if not created:
            if reserved and worker:
                worker.unreserve()
            # Runs created before inputs were bound to the signature hashed the raw input.
            if record.input_hash not in (digest, serde.input_hash(text)):
                raise IdempotencyConflict(
                    name, key or "", record.id, definition.difference(record.input, identity)
                )
            return Run(self, record)
        self.metrics.started(name)
        if reserved and worker:
            worker.dispatch(Claim(record, []))
        elif worker is not None:
            worker.wake()
        return Run(self, record)

    def get(self, run_id: str) -> Run:
        """The run with this id. Raises RunNotFound."""
        record = self.store.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
        return Run(self, record)

    def runs(
        self, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[Run]:
        """Runs, newest first, optionally only those of one status and/or saga.

        Raises ConfigurationError (a ValueError) for a status that does not exist."""
        if status is not None and status not in STATUSES:
            raise ConfigurationError(
                f"no run status {status!r}: use one of {', '.join(STATUSES)}, or None for all"
            )
        return [Run(self, r) for r in self.store.list_runs(status=status, saga=saga, limit=limit)]

    def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send a signal to a run; it is kept until the run's `ctx.wait(name)` takes it.

        Raises RunNotFound, InvalidRunState for a run that has ended, SerializationError for
        a payload that is not JSON data.
        """
        text = serde.dumps(payload, f"the payload of signal {name!r}")
        self.store.send_signal(run_id, name, text, self.store.now())
        if self.worker is not None:
            self.worker.wake()

    def cancel(self, run_id: str) -> Run:
        """Ask a run to stop: what it did is compensated and it ends `cancelled`.

        A run already executing stops at its next step boundary. Raises RunNotFound, or
        InvalidRunState for a run that has ended or passed its pivot.
        """
        record = self.store.request_cancel(run_id, self.store.now())
        if self.worker is not None:
            self.worker.wake()
        return Run(self, record)

    def redrive(self, run_id: str) -> Run:
        """Resume a failed run exactly where it stopped: the compensation that gave up is
        tried again and unwinding goes on; or the step that failed after the pivot runs again
        and the saga continues. Raises RunNotFound, or InvalidRunState unless it failed."""
        record = self.store.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
        if record.status != RunStatus.FAILED:
            raise InvalidRunState(
                f"run {run_id} is {record.status}: only failed runs can be redriven"
            )
        recorded = ErrorRecord.from_json(record.error)
        if recorded is not None and recorded.phase == "compensation":
            self.store.redrive(run_id, self.store.now(), RunStatus.COMPENSATING, None)
        else:
            position = recorded.position if recorded is not None else None
            self.store.redrive(run_id, self.store.now(), RunStatus.PENDING, position)
        if self.worker is not None:
            self.worker.wake()
        return self.get(run_id)

    # --- forks ---------------------------------------------------------------------------------
    def fork(self, run_id: str, from_step: int, *, key: str | None = None) -> Run:
        """Start a new run of the same saga and input that reuses the journal of run `run_id`
        before position `from_step` (those steps return their recorded results without
        running) and runs the rest anew; `run.forked_from` names the origin.

        Reused steps are not compensated again by the origin's history: if the origin undid
        them, fork from before them. With `key`, forking is idempotent: the same key returns
        the same fork. Raises RunNotFound; InvalidRunState for a run that has not ended or a
        reused entry that failed; ConfigurationError for a position outside the journal;
        IdempotencyConflict for a key used by another run.
        """
        record, created = create_fork(self.store, self.steps, run_id, from_step, key)
        if created and self.worker is not None:
            self.worker.wake()
        return Run(self, record)

    def check_runs(
        self, store: Store | None = None
    ) -> Iterator[tuple[RunRecord, Divergence | None]]:
        """The deploy gate: each unfinished run of `store` (default: the App's), with how it
        would diverge if replayed on the sagas declared now (None: it would not). Runs no
        step body and writes nothing."""
        return check_runs(store or self.store, self.sagas, self.steps)

    # --- fan-out -------------------------------------------------------------------------------
    def children(self, run_id: str, status: str | None = None, limit: int = 100) -> list[Run]:
        """The child runs a run started with `ctx.map` over a saga or `ctx.child`, by the
        position of the call and the index of the item (only those of one status if given)."""
        if status is not None and status not in STATUSES:
            self.runs(status=status)  # raises the one error for a status that does not exist
        found = self.store.children(run_id, status=status, limit=limit)
        return [Run(self, child.run) for child in found]

    # --- workers -------------------------------------------------------------------------------
    def launch(self, concurrency: int | None = None) -> Worker:
        """Start an in-process worker: runs of this store are executed by this process's
        threads, and runs of dead workers are taken over. Idempotent."""
        if self.worker is None:
            runtime = Runtime(
                store=self.store,  # open before threads start
                sagas=MappingProxyType(self.sagas),
                steps=MappingProxyType(self.steps),
                metrics=self.metrics,
                invoker=self._invoker,
                completions=self._completions,
                wake=lambda: self.worker.wake() if self.worker is not None else None,
            )
            worker = Worker(
                runtime,
                concurrency=concurrency or self.concurrency,
                lease=self.lease,
                poll_interval=self.poll_interval,
            )
            worker.start()
            self.worker = worker
            self._messaging.lease = self.lease  # `sagaway worker --lease` may have changed it
            self._messaging.start()
            if self.schedules:
                self._schedule_runner.launch()
        return self.worker

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the in-process worker: executing runs are handed back at their next step
        boundary (and resume elsewhere or at the next launch)."""
        worker, self.worker = self.worker, None
        self._schedule_runner.stop()
        self._messaging.stop(timeout)
        if worker is not None:
            worker.stop(timeout)
        if self.recorder is not None and self._store is not None:
            self.recorder.flush()  # leaving `with app:` keeps what was measured

    def _gauges(self) -> list[tuple[str, str, float]]:
        """Queue depth and age, sampled with each metrics flush by a process running a worker."""
        if self.worker is None:
            return []
        now = self.store.now()
        depth, oldest = self.store.queue_stats(now)
        return [
            ("queue_depth", "", float(depth)),
            ("queue_age_seconds", "", 0.0 if oldest is None else max(0.0, now - oldest)),
            *self._messaging.gauges(now),
        ]

    def prune_runs(
        self,
        older_than: float,
        statuses: Sequence[str] = SETTLED,
    ) -> int:
        """Delete runs that ended (with one of `statuses`) more than `older_than` seconds
        ago, with their journals, signals and events; return how many went.

        `failed` runs are kept unless named: they wait for someone to redrive them. A key
        whose run was pruned is free again: `start` with it creates a new run.
        """
        if not older_than >= 0:
            raise ConfigurationError(
                f"prune_runs(older_than={older_than!r}): give the age in seconds, 0 or more"
            )
        return self.store.prune_runs(self.store.now() - older_than, statuses)

    def prune_metrics(self, stop: Callable[[], bool] | None = None) -> int:
        """Delete the engine's metric buckets older than `metrics_retention_days`, a day of
        minutes per transaction until done or `stop()` is true; return how many went. The
        recorder calls this hourly; nothing happens without a retention."""
        if self.metrics_retention_days is None:
            return 0
        cutoff = self.store.now() - self.metrics_retention_days * 86400
        return self.store.prune_metrics(int(cutoff // 60), stop)

    def close(self) -> None:
        """Shut down the worker, write the last metrics and close the store."""
        self.shutdown()
        if self.recorder is not None and self._store is not None:
            self.recorder.close()
        self._invoker.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> App:
        self.launch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
