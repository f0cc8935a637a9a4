"""The JSON shapes of the API, as the OpenAPI document states them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "ActionDone",
    "AuditEntry",
    "AuditPage",
    "BulkRequest",
    "BulkResult",
    "ForkRequest",
    "ListWithNote",
    "ProblemDetail",
    "RunDetail",
    "RunPage",
    "RunSummary",
    "SharedStates",
    "SloReportBody",
    "StuckWork",
    "TokenCreate",
    "TokenCreated",
    "TokenInfo",
]


class ProblemDetail(BaseModel):
    """An RFC 9457 problem."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


class RunSummary(BaseModel):
    """A run as lists show it."""

    id: str
    saga: str
    key: str | None
    status: str
    created_at: float
    updated_at: float
    owner: str | None
    due_at: float | None
    waiting: dict[str, Any] | None
    error: dict[str, Any] | None
    # A saga with a concurrency limit: key, limit, priority, holds_slot, queued_at.
    flow: dict[str, Any] | None = None


class RunPage(BaseModel):
    """One page of runs; pass `next_cursor` as `cursor` for the next (null: last page)."""

    items: list[RunSummary]
    next_cursor: str | None


class RunDetail(RunSummary):
    """A run with its journal, events, signals, fork links and action previews."""

    input: Any = None
    result: Any = None
    epoch: int
    recoveries: int
    pivot_passed: bool
    cancel_requested: bool
    forked_from: dict[str, Any] | None
    forks: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    events: list[dict[str, Any]]
    pending_signals: list[dict[str, Any]]
    actions: dict[str, Any]


class ActionDone(BaseModel):
    """What a change did: the run and its status now (a fork: the new run)."""

    run_id: str
    status: str
    forked_from: str | None = None


class ForkRequest(BaseModel):
    """Fork from journal position `from_step`; `key` makes forking again a no-op."""

    from_step: int = Field(ge=0, le=1_000_000)
    key: str | None = Field(default=None, max_length=500)


class BulkRequest(BaseModel):
    """Which runs a bulk action takes (as the runs list's filters), and whether only to count."""

    status: list[Literal["pending", "running", "waiting", "failed"]] = Field(default_factory=list)
    saga: str | None = None
    key: str | None = None
    q: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    dry_run: bool = True


class BulkResult(BaseModel):
    """Runs a bulk action matched, changed and could not change (with why)."""

    action: str
    dry_run: bool
    matched: int
    more: bool = False
    sample: list[str] = Field(default_factory=list)
    done: list[str]
    refused: list[dict[str, str]]


class StuckWork(BaseModel):
    """Runs that may need a person, by kind."""

    unowned: list[RunSummary]
    parked: list[RunSummary]
    overdue: list[RunSummary]
    failed: list[RunSummary]
    parked_per_step: dict[str, int]


class SharedStates(BaseModel):
    """Circuit breakers and rate limits shared by every worker."""

    breakers: list[dict[str, Any]]
    rate_limits: list[dict[str, Any]]


class ListWithNote(BaseModel):
    """A list, with a note when it is empty for a reason."""

    items: list[dict[str, Any]]
    note: str | None = None


class SloReportBody(BaseModel):
    """The SLO report (as `sagaway slo report --json`), or a note why there is none."""

    model_config = {"extra": "allow"}

    slos: list[dict[str, Any]]
    note: str | None = None


class DeadLetterRedrive(BaseModel):
    """Which dead letters to move back: all of `group`'s, or those in `ids`."""

    group: str = Field(min_length=1, max_length=500)
    ids: list[str] | None = None


class RedriveDone(BaseModel):
    """How many dead letters went back to their group."""

    group: str
    moved: int


class AuditEntry(BaseModel):
    """One audited change."""

    id: int
    at: float
    actor: str
    action: str
    run_id: str | None
    detail: Any = None
    outcome: str


class AuditPage(BaseModel):
    """Audit entries, newest first; pass `next_before` as `before` for older ones."""

    items: list[AuditEntry]
    next_before: int | None


class TokenInfo(BaseModel):
    """A token (never the token itself)."""

    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float | None


class TokenCreate(BaseModel):
    """The role and name of a new token."""

    role: Literal["viewer", "operator", "admin"]
    name: str | None = Field(default=None, max_length=200)


class TokenCreated(TokenInfo):
    """A new token: `token` is shown this once."""

    token: str
