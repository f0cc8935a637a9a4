"""The Store interface: everything the engine persists, behind one backend-agnostic contract.

The engine never writes SQL. It reads runs and journals, and changes state only through
`Store` methods, each of which is atomic. Checkpoints are fenced: a write carries the lease
epoch under which the run was claimed, and is refused with `LeaseLost` once another worker
has claimed the run since. Backends batch concurrent writes into one transaction (group
commit) and release each caller only after that transaction is durable.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from typing import Any, Final, NamedTuple

from sagaway.store.access import AccessStore
from sagaway.store.browse import RunBrowser
from sagaway.store.clock import StoreClock
from sagaway.store.fanout import FanoutStore
from sagaway.store.flow import FlowControl, FlowStore
from sagaway.store.forks import ForkStore
from sagaway.store.messages import MessageStore, NewMessage
from sagaway.store.metrics import MetricBucket, MetricStore
from sagaway.store.shared_state import SharedStateStore

__all__ = [
    "COMPENSATION",
    "FORWARD",
    "KEEP",
    "SETTLED",
    "STATUSES",
    "TERMINAL",
    "Checkpoint",
    "Claim",
    "EntryStatus",
    "ErrorRecord",
    "EventRecord",
    "JournalEntry",
    "Keep",
    "MetricBucket",
    "MetricStore",
    "NewRun",
    "Phase",
    "RunRecord",
    "RunStatus",
    "RunUpdate",
    "SharedStateStore",
    "SignalRecord",
    "Store",
    "Wait",
]


class RunStatus(StrEnum):
    """Where a run is in its life (DESIGN.md, "Statuses"). A `str`: stored and compared as
    its value."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPENSATING = "compensating"
    SUCCEEDED = "succeeded"
    COMPENSATED = "compensated"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """The run has ended (`failed` may still be redriven)."""
        return self in TERMINAL

    @property
    def is_settled(self) -> bool:
        """The run has ended for good: nothing reopens it."""
        return self in SETTLED


TERMINAL: Final = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.COMPENSATED, RunStatus.FAILED, RunStatus.CANCELLED}
)
# The ends nothing reopens (`failed` waits for a redrive): no signal is kept for them, and
# pruning takes them by default.
SETTLED: Final = (RunStatus.SUCCEEDED, RunStatus.COMPENSATED, RunStatus.CANCELLED)
STATUSES: Final = tuple(RunStatus)


class Phase(IntEnum):
    """The two halves of a journal: forward actions, and the compensations of forward steps
    (kept at the position of the step they undo). Stored as 0 and 1."""

    FORWARD = 0
    COMPENSATION = 1

    @property
    def label(self) -> str:
        """ "forward" or "compensation", as `Step.phase` shows it."""
        return self.name.lower()


FORWARD: Final = Phase.FORWARD
COMPENSATION: Final = Phase.COMPENSATION


class EntryStatus(StrEnum):
    """How a journal entry ended: `ok`, `failed`, or (for waits) `timeout`; a fan-out (map,
    gather, child) still under way is `running`."""

    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    RUNNING = "running"


@dataclass(frozen=True)
class ErrorRecord:
    """An error as recorded in a journal entry or on a run: its class, message and the plain
    data needed to rebuild it, and where it happened. A compensation's failure keeps the
    error that started the unwinding as `original`. Stored as JSON text."""

    type: str
    message: str
    args: list[Any] | None = None
    state: dict[str, Any] | None = None
    traceback: str = ""
    phase: str | None = None
    position: int | None = None
    step: str | None = None
    original: ErrorRecord | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ErrorRecord:
        """From the decoded JSON; keys this version does not know are ignored."""
        original = doc.get("original")
        return cls(
            type=str(doc.get("type", "Exception")),
            message=str(doc.get("message", "")),
            args=doc.get("args"),
            state=doc.get("state"),
            traceback=str(doc.get("traceback") or ""),
            phase=doc.get("phase"),
            position=doc.get("position"),
            step=doc.get("step"),
            original=cls.from_doc(original) if isinstance(original, dict) else None,
        )

    @classmethod
    def from_json(cls, text: str | None) -> ErrorRecord | None:
        """Decode a stored error (None stays None)."""
        return None if not text else cls.from_doc(json.loads(text))

    def to_doc(self) -> dict[str, Any]:
        """The JSON-ready form (context keys only when set)."""
        doc: dict[str, Any] = {
            "type": self.type,
            "message": self.message,
            "args": self.args,
            "state": self.state,
            "traceback": self.traceback,
        }
        for key in ("phase", "position", "step"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = value
        if self.original is not None:
            doc["original"] = self.original.to_doc()
        return doc

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(self.to_doc())


@dataclass(frozen=True)
class RunRecord:
    """A run's row: identity, input, status and the bookkeeping of leases and waits."""

    id: str
    saga: str
    key: str | None
    input: str
    input_hash: str
    status: RunStatus
    created_at: float
    updated_at: float
    due_at: float | None = None
    owner: str | None = None
    epoch: int = 0
    wait_name: str | None = None
    wait_position: int | None = None
    wait_deadline: float | None = None
    pivot_passed: bool = False
    cancel_requested: bool = False
    result: str | None = None
    error: str | None = None
    recoveries: int = 0
    parent_id: str | None = None  # the run whose ctx.map or ctx.child started this one
    # The W3C trace context (JSON: traceparent, tracestate) its starter had; None untraced.
    trace_context: str | None = None
    flow: FlowControl | None = None  # its saga's concurrency limit: key, priority, slot


@dataclass(frozen=True)
class NewRun:
    """What `start` inserts."""

    id: str
    saga: str
    key: str | None
    input: str
    input_hash: str
    now: float
    trace_context: str | None = None  # the starter's W3C trace context (JSON), if traced
    flow: FlowControl | None = None


class JournalEntry(NamedTuple):
    """One recorded action of a run, keyed by (phase, position).

    The forward phase holds the actions of the saga function (kind `step`, `wait`, `sleep`,
    `now`); the compensation phase holds the compensation of the forward step at the same
    position. Payloads are JSON text. `digest` identifies a step call's arguments (None
    when they are not JSON data, and on entries older than schema 5). Build entries with the
    named constructors.
    """

    position: int
    phase: Phase
    kind: str
    name: str
    status: EntryStatus
    args: str | None = None
    result: str | None = None
    error: str | None = None
    attempts: int = 1
    started_at: float = 0.0
    finished_at: float = 0.0
    digest: str | None = None

    @classmethod
    def step(
        cls,
        position: int,
        name: str,
        *,
        args: str | None,
        result: str | None = None,
        error: str | None = None,
        attempts: int,
        started_at: float,
        finished_at: float,
        digest: str | None,
    ) -> JournalEntry:
        """A step call that completed (with `result`) or failed for good (with `error`)."""
        status = EntryStatus.FAILED if error is not None else EntryStatus.OK
        return cls(
            position, FORWARD, "step", name, status, args, result, error, attempts,
            started_at, finished_at, digest,
        )  # fmt: skip

    @classmethod
    def compensation(
        cls,
        position: int,
        name: str,
        *,
        result: str | None = None,
        error: str | None = None,
        attempts: int,
        started_at: float,
        finished_at: float,
    ) -> JournalEntry:
        """The compensation of the step at `position`: done (with `result`) or given up
        (with `error`)."""
        status = EntryStatus.FAILED if error is not None else EntryStatus.OK
        return cls(
            position, COMPENSATION, "compensation", name, status, None, result, error,
            attempts, started_at, finished_at,
        )  # fmt: skip

    @classmethod
    def fanout(
        cls,
        position: int,
        kind: str,
        name: str,
        status: EntryStatus,
        *,
        progress: str,
        error: str | None = None,
        started_at: float,
        finished_at: float,
        digest: str | None,
    ) -> JournalEntry:
        """The own entry of a map, gather or child call (kind `map`, `gather`, `children`):
        `running` with its `progress` (JSON counts) while under way, then how it ended."""
        return cls(
            position, FORWARD, kind, name, status, None, progress, error, 1, started_at,
            finished_at, digest,
        )  # fmt: skip

    @classmethod
    def child(
        cls,
        position: int,
        saga: str,
        *,
        ok: bool,
        ref: str,
        result: str | None,
        error: str | None,
        started_at: float,
        finished_at: float,
    ) -> JournalEntry:
        """A branch that is a child run of `saga`, which succeeded (`ok`, with its `result`)
        or ended otherwise (with its `error`); `ref` (JSON) names the run and its status."""
        status = EntryStatus.OK if ok else EntryStatus.FAILED
        return cls(
            position, FORWARD, "child", saga, status, ref, result, error, 1, started_at,
            finished_at,
        )  # fmt: skip

    @classmethod
    def instant(
        cls,
        position: int,
        kind: str,
        name: str,
        status: EntryStatus,
        result: str | None,
        at: float,
    ) -> JournalEntry:
        """A forward action that takes no time to record: a wait's outcome, a timer, a
        clock reading."""
        return cls(position, FORWARD, kind, name, status, None, result, None, 1, at, at)


@dataclass(frozen=True)
class EventRecord:
    """Something worth telling a person: retries, escalations, recoveries, redrives."""

    run_id: str
    at: float
    kind: str
    data: str = "{}"
    id: int | None = None


@dataclass(frozen=True)
class SignalRecord:
    """A signal sent to a run, kept until a `wait` consumes it."""

    id: int
    run_id: str
    name: str
    payload: str
    sent_at: float
    trace_context: str | None = None  # the sender's W3C trace context (JSON), if traced


class Keep(Enum):
    """The type of `KEEP`: an enum of one member, so that a type checker narrows a field
    compared with `is KEEP` / `is not KEEP` to the value it holds otherwise."""

    KEEP = "KEEP"

    def __repr__(self) -> str:
        return "KEEP"

    __str__ = __repr__


KEEP: Final = Keep.KEEP
"""Marks a `RunUpdate` field that the checkpoint leaves unchanged."""


class Wait(NamedTuple):
    """What a resting run waits for: a signal `name` (or a park marker) taken at journal
    `position`, until `deadline` (epoch seconds; None waits for ever)."""

    name: str
    position: int
    deadline: float | None


@dataclass
class RunUpdate:
    """Run columns a checkpoint changes; fields left as `KEEP` stay as they are, `None`
    clears a column (e.g. `owner=None` releases the lease)."""

    status: RunStatus | Keep = KEEP
    due_at: float | Keep | None = KEEP
    owner: str | Keep | None = KEEP
    result: str | Keep | None = KEEP
    error: str | Keep | None = KEEP
    wait: Wait | Keep | None = KEEP
    pivot_passed: bool = False
    clear_cancel: bool = False
    # The run goes to rest: it is due at once instead if a cancel was requested, or a
    # signal arrived, since it was claimed (closes the race with a run going to sleep).
    rest: bool = False


@dataclass
class Checkpoint:
    """One fenced, atomic write for a run: journal entries, consumed signals, events and a
    change of the run row. Refused with `LeaseLost` unless the run's epoch is `epoch`."""

    run_id: str
    epoch: int
    now: float
    lease_until: float | None
    entries: list[JournalEntry] = field(default_factory=list)
    consumed: list[tuple[int, int]] = field(default_factory=list)  # (signal id, position)
    events: list[EventRecord] = field(default_factory=list)
    update: RunUpdate | None = None
    # Messages published by the steps recorded here: committed iff their completions are.
    messages: list[NewMessage] = field(default_factory=list)
    release_slot: bool = False  # the run rests or ends: its flow-control slot is given back


@dataclass(frozen=True)
class Claim:
    """A run claimed by a worker, with its journal, ready to execute."""

    run: RunRecord
    journal: list[JournalEntry]
    taken_over_from: str | None = None


class Store(
    SharedStateStore,
    MetricStore,
    MessageStore,
    AccessStore,
    ForkStore,
    RunBrowser,
    FanoutStore,
    FlowStore,
    StoreClock,
):
    """Persistence of runs, journals, signals and events, plus the shared state, metric
    buckets, messages, access, forks, run lists, child runs and the database's clock of
    their own contracts. Thread-safe."""

    url: str

    # --- lifecycle -------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None:
        """Release connections and background resources."""

    @property
    @abstractmethod
    def description(self) -> str:
        """A short human description of the backend and its durability settings."""

    # --- runs --------------------------------------------------------------------------
    @abstractmethod
    def create_run(
        self, new: NewRun, owner: str | None = None, lease_until: float | None = None
    ) -> tuple[RunRecord, bool]:
        """Insert a run, or return the existing one with the same (saga, key).

        Returns (record, created). With `owner`, the new run is inserted already claimed by
        that worker (epoch 1), saving the separate claim write.
        """

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None:
        """The run's current row, or None."""

    @abstractmethod
    def list_runs(
        self, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered."""

    @abstractmethod
    def runs_after(self, status: str, after: str | None, limit: int) -> list[RunRecord]:
        """Up to `limit` runs with `status`, by id, those with an id above `after` (keyset
        pages over any number of runs)."""

    @abstractmethod
    def last_key(self, saga: str, prefix: str) -> str | None:
        """The greatest key starting with `prefix` among the runs of `saga` (schedules name
        their runs' keys by tick), or None."""

    @abstractmethod
    def journals(self, run_ids: Sequence[str]) -> dict[str, list[JournalEntry]]:
        """The journals of several runs at once, each ordered by (phase, position)."""

    @abstractmethod
    def count_runs(self, saga: str | None = None) -> dict[str, int]:
        """Number of runs per status (only those of `saga` when given)."""

    @abstractmethod
    def journal(self, run_id: str) -> list[JournalEntry]:
        """The run's journal ordered by (phase, position)."""

    @abstractmethod
    def events(
        self, run_id: str | None = None, kind: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        """Recorded events, oldest first."""

    @abstractmethod
    def pending_signal(
        self, run_id: str, name: str, skip: Sequence[int] = ()
    ) -> SignalRecord | None:
        """The oldest unconsumed signal of that name for the run, ignoring ids in `skip`."""

    @abstractmethod
    def pending_signals(self, run_id: str) -> list[SignalRecord]:
        """Every signal sent to the run that no `wait` has consumed yet, oldest first."""

    # --- workers -------------------------------------------------------------------------
    @abstractmethod
    def claim(
        self, owner: str, limit: int, now: float, lease_until: float, takeover: bool = True
    ) -> list[Claim]:
        """Lease up to `limit` due runs to `owner`, bumping each run's epoch. Without
        `takeover`, runs whose lease ran out (they have an owner) are left alone."""

    @abstractmethod
    def checkpoint(self, cp: Checkpoint) -> bool:
        """Apply the checkpoint atomically and durably; return the run's cancel flag.

        Raises `LeaseLost` when the run's epoch is no longer `cp.epoch`.
        """

    @abstractmethod
    def heartbeat(self, owner: str, run_ids: Sequence[str], lease_until: float) -> int:
        """Extend `owner`'s leases on the runs `run_ids` it is executing; return how many.

        Only runs named here are renewed, so a run its worker stopped executing (after an
        error) sees its lease expire and is recovered."""

    @abstractmethod
    def owners(self) -> list[str]:
        """Owners currently holding leases on active runs."""

    @abstractmethod
    def expire_owner(self, owner: str, now: float) -> int:
        """Make every active run of a dead owner due now; return how many."""

    @abstractmethod
    def queue_stats(self, now: float) -> tuple[int, float | None]:
        """How many runs are due now, and the earliest `due_at` among them (None if none)."""

    @abstractmethod
    def next_due(self) -> float | None:
        """The earliest `due_at` of any run, or None."""

    def on_wake(self, callback: Callable[[], None]) -> Callable[[], None] | None:
        """Call `callback()` (from a thread of the store's) whenever any process may have
        made a run due or moved a timer, so a worker looks at once instead of at its next
        poll. Returns a function that cancels the subscription, or None when this backend
        cannot tell (SQLite): the caller must then poll."""
        return None

    # --- control ---------------------------------------------------------------------------
    @abstractmethod
    def send_signal(
        self, run_id: str, name: str, payload: str, now: float, trace_context: str | None = None
    ) -> SignalRecord:
        """Keep a signal (with its sender's trace context) for the run and wake it if it
        waits. Raises RunNotFound."""

    @abstractmethod
    def request_cancel(self, run_id: str, now: float) -> RunRecord:
        """Flag a non-terminal run for cancellation and make it due.

        Raises RunNotFound, or InvalidRunState for a terminal run or one past its pivot.
        """

    @abstractmethod
    def redrive(self, run_id: str, now: float, status: str, rerun_position: int | None) -> None:
        """Move a failed run back to `status` and make it due, clearing its wait; drop the
        failed forward entry at `rerun_position` so it runs again; keep the error only when
        resuming the unwinding. Raises InvalidRunState unless the run failed."""

    @abstractmethod
    def record_event(self, event: EventRecord) -> None:
        """Append an event outside any checkpoint."""

    @abstractmethod
    def prune_runs(self, ended_before: float, statuses: Sequence[str]) -> int:
        """Delete runs with one of these terminal `statuses` last updated before
        `ended_before`, with their journals, signals and events; return how many went."""
