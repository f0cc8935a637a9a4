"""The JSON API under /api/v1 (see docs/api.md). viewer reads; operator changes runs;
admin manages tokens. Every change is audited (`_operations`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response

from sagaway.api import _messaging as messaging
from sagaway.api import _models as m
from sagaway.api._auth import Principal
from sagaway.api._monitoring import prometheus_text
from sagaway.api._problems import Problem
from sagaway.api._state import ApiState
from sagaway.api._views import find_page, run_detail, run_summary, shared_states, stuck_work
from sagaway.api.access import Role, actor_name, issue_token, revoke_token
from sagaway.store.base import STATUSES
from sagaway.store.browse import RunQuery

__all__ = ["api_router", "run_query"]

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}


def problem(text: str) -> dict[str, Any]:
    """An error response as the OpenAPI document states it."""
    return {"model": m.ProblemDetail, "description": text, "content": PROBLEM}


ERRORS: dict[int | str, dict[str, Any]] = {
    status: problem(text)
    for status, text in (
        (401, "no or unknown credentials"),
        (403, "the role may not do this, or a browser form lacks its CSRF token"),
        (422, "invalid parameters"),
    )
}
RUN_ERRORS = {
    **ERRORS,
    404: problem("no such run"),
    409: problem("the run's state refuses it"),
}
StatusName = Literal[
    "pending", "running", "waiting", "compensating", "succeeded", "compensated", "failed",
    "cancelled",
]  # fmt: skip
Status = Annotated[list[StatusName] | None, Query(description="any of these (repeat for several)")]


def _moment(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def run_query(
    status: list[str] | None,
    saga: str | None,
    key: str | None,
    q: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> RunQuery:
    """The store query of the runs list's parameters. Raises Problem 422 for an unknown
    status."""
    unknown = [s for s in status or () if s not in STATUSES]
    if unknown:
        raise Problem(422, f"no run status {unknown[0]!r}: use one of {', '.join(STATUSES)}")
    return RunQuery(
        statuses=tuple(status or ()),
        saga=saga or None,
        key=key or None,
        search=(q or "").strip() or None,
        created_after=_moment(created_after),
        created_before=_moment(created_before),
    )


def api_router(state: ApiState) -> APIRouter:
    """Every route of the JSON API, bound to `state`."""
    router = APIRouter()
    viewer = Depends(state.needs(Role.VIEWER))
    operator = Depends(state.needs(Role.OPERATOR))
    admin = Depends(state.needs(Role.ADMIN))
    store = state.store

    # --- runs ----------------------------------------------------------------------------
    @router.get("/runs", response_model=m.RunPage, responses=ERRORS, tags=["runs"])
    def list_runs(
        who: Principal = viewer,
        status: Status = None,
        saga: Annotated[str | None, Query(max_length=500)] = None,
        key: Annotated[str | None, Query(max_length=500, description="exactly this key")] = None,
        q: Annotated[
            str | None, Query(max_length=500, description="a run id, or the start of a key")
        ] = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
    ) -> dict[str, Any]:
        """Runs, newest first (a search `q`: by key), filtered, one page at a time."""
        query = run_query(status, saga, key, q, created_after, created_before)
        records, following = find_page(store, query, limit, cursor)
        return {"items": [run_summary(r) for r in records], "next_cursor": following}

    @router.get("/runs/{run_id}", response_model=m.RunDetail, responses=RUN_ERRORS, tags=["runs"])
    def get_run(run_id: str, who: Principal = viewer) -> dict[str, Any]:
        """A run with its journal, events, pending signals, forks and action previews."""
        return run_detail(store, run_id)

    @router.post(
        "/runs/{run_id}/signals/{name}",
        response_model=m.ActionDone,
        responses=RUN_ERRORS,
        tags=["actions"],
    )
    def signal_run(
        run_id: str,
        name: str,
        payload: Annotated[Any, Body(description="the signal's payload (JSON)")] = None,
        who: Principal = operator,
    ) -> dict[str, Any]:
        """Send a signal to a run; it is kept until the run's wait takes it."""
        state.operations.signal(who, run_id, name, payload)
        return {"run_id": run_id, "status": str(state.app.get(run_id).record.status)}

    @router.post(
        "/runs/{run_id}/cancel", response_model=m.ActionDone, responses=RUN_ERRORS, tags=["actions"]
    )
    def cancel_run(run_id: str, who: Principal = operator) -> dict[str, Any]:
        """Cancel a run: what it did is compensated and it ends cancelled."""
        return {"run_id": run_id, "status": str(state.operations.cancel(who, run_id))}

    @router.post(
        "/runs/{run_id}/redrive",
        response_model=m.ActionDone,
        responses=RUN_ERRORS,
        tags=["actions"],
    )
    def redrive_run(run_id: str, who: Principal = operator) -> dict[str, Any]:
        """Resume a failed run where it stopped."""
        return {"run_id": run_id, "status": str(state.operations.redrive(who, run_id))}

    @router.post(
        "/runs/{run_id}/fork",
        response_model=m.ActionDone,
        status_code=201,
        responses=RUN_ERRORS,
        tags=["actions"],
    )
    def fork_run(run_id: str, body: m.ForkRequest, who: Principal = operator) -> dict[str, Any]:
        """Start a new run of the same input reusing the journal before `from_step`."""
        new_id = state.operations.fork(who, run_id, body.from_step, body.key)
        status = state.app.get(new_id).record.status
        return {"run_id": new_id, "status": str(status), "forked_from": run_id}

    def bulk(action: str, body: m.BulkRequest, who: Principal) -> dict[str, Any]:
        query = RunQuery(
            statuses=tuple(body.status),
            saga=body.saga or None,
            key=body.key or None,
            search=(body.q or "").strip() or None,
            created_after=body.created_after,
            created_before=body.created_before,
        )
        return state.operations.bulk(who, action, query, body.dry_run)

    @router.post("/bulk/cancel", response_model=m.BulkResult, responses=ERRORS, tags=["actions"])
    def bulk_cancel(body: m.BulkRequest, who: Principal = operator) -> dict[str, Any]:
        """Cancel every run the filter selects that has not ended (dry_run: only count)."""
        return bulk("cancel", body, who)

    @router.post("/bulk/redrive", response_model=m.BulkResult, responses=ERRORS, tags=["actions"])
    def bulk_redrive(body: m.BulkRequest, who: Principal = operator) -> dict[str, Any]:
        """Redrive every failed run the filter selects (dry_run: only count)."""
        return bulk("redrive", body, who)

    @router.get("/stuck", response_model=m.StuckWork, responses=ERRORS, tags=["runs"])
    def stuck(who: Principal = viewer) -> dict[str, Any]:
        """Runs without an owner past their lease, parked, overdue, or failed."""
        return stuck_work(store, state.settings.overdue_after)

    # --- resilience and monitoring ------------------------------------------------------
    @router.get("/breakers", response_model=m.SharedStates, responses=ERRORS, tags=["resilience"])
    def breakers(who: Principal = viewer) -> dict[str, Any]:
        """Circuit breakers and rate limits shared by every worker."""
        return shared_states(store, state.app)

    @router.get(
        "/rate-limits", response_model=m.SharedStates, responses=ERRORS, tags=["resilience"]
    )
    def rate_limits(who: Principal = viewer) -> dict[str, Any]:
        """The same view as /breakers (rate limits are its second list)."""
        return shared_states(store, state.app)

    @router.get("/slos", response_model=m.SloReportBody, responses=ERRORS, tags=["monitoring"])
    def slos(who: Principal = viewer) -> dict[str, Any]:
        """SLIs, error budgets, burn rates and alerts of the configured slo.yaml."""
        return state.slos.as_json()

    @router.get("/alarms", response_model=m.ListWithNote, responses=ERRORS, tags=["monitoring"])
    def alarms(who: Principal = viewer) -> dict[str, Any]:
        """Alarm states and their incident timelines."""
        return state.alarms.as_json()

    # --- messaging ---------------------------------------------------------------------
    @router.get("/topics", response_model=m.ListWithNote, responses=ERRORS, tags=["messaging"])
    def topics(who: Principal = viewer) -> dict[str, Any]:
        """Topics with their retained messages and groups."""
        return {"items": messaging.topics(state.app), "note": None}

    @router.get("/groups", response_model=m.ListWithNote, responses=ERRORS, tags=["messaging"])
    def groups(who: Principal = viewer) -> dict[str, Any]:
        """Consumer groups with ready, handled and dead counts and their lag."""
        return {"items": messaging.groups(state.app), "note": None}

    @router.get(
        "/dead-letters", response_model=m.ListWithNote, responses=ERRORS, tags=["messaging"]
    )
    def dead_letters(
        who: Principal = viewer,
        group: Annotated[str | None, Query(max_length=500)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        """Messages whose retries were spent, with their last error and fingerprint."""
        return {"items": messaging.dead_letters(state.app, group, limit), "note": None}

    @router.post(
        "/dead-letters/redrive",
        response_model=m.RedriveDone,
        responses=ERRORS,
        tags=["messaging"],
    )
    def redrive_dead_letters(body: m.DeadLetterRedrive, who: Principal = operator) -> dict:
        """Move a group's dead letters (all, or those named) back for another try."""
        moved = messaging.redrive_dead_letters(state.app, who, body.group, body.ids)
        return {"group": body.group, "moved": moved}

    # --- audit and tokens ----------------------------------------------------------------
    @router.get("/audit", response_model=m.AuditPage, responses=ERRORS, tags=["audit"])
    def audit(
        who: Principal = viewer,
        run_id: Annotated[str | None, Query(max_length=500)] = None,
        before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        """Who changed what, newest first."""
        records = store.audit(run_id=run_id, before=before, limit=limit)
        items = [{**vars(r), "detail": json.loads(r.detail)} for r in records]
        following = records[-1].id if len(records) == limit else None
        return {"items": items, "next_before": following}

    @router.get("/tokens", response_model=list[m.TokenInfo], responses=ERRORS, tags=["tokens"])
    def tokens(who: Principal = admin) -> list[dict[str, Any]]:
        """Every token, revoked ones included (never the tokens themselves)."""
        return [vars(t) for t in store.tokens()]

    @router.post(
        "/tokens",
        response_model=m.TokenCreated,
        status_code=201,
        responses=ERRORS,
        tags=["tokens"],
    )
    def create_token(body: m.TokenCreate, who: Principal = admin) -> dict[str, Any]:
        """Create a token; the response carries it this once."""
        record, token = issue_token(store, body.role, body.name, actor_name(who.token))
        return {**vars(record), "token": token}

    @router.delete(
        "/tokens/{token_id}",
        response_model=m.TokenInfo,
        responses={**ERRORS, 404: problem("no such token")},
        tags=["tokens"],
    )
    def delete_token(token_id: str, who: Principal = admin) -> dict[str, Any]:
        """Revoke a token: it and its sessions stop working at once."""
        record = revoke_token(store, token_id, actor_name(who.token))
        if record is None:
            raise Problem(404, f"no token with id {token_id!r}: list them with GET /tokens")
        return vars(record)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={**ERRORS, 200: {"content": {"text/plain": {}}}},
        tags=["monitoring"],
    )
    def metrics(who: Principal = viewer) -> Response:
        """The engine's metrics in Prometheus' text format (also at /metrics)."""
        return Response(prometheus_text(store), media_type="text/plain; version=0.0.4")

    return router
