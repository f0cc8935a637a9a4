"""Runs, journals and shared states as the API returns them (plain JSON data), read once per
request from the store."""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from sagaway.api._previews import cancel_preview, fork_preview, redrive_preview
from sagaway.api._problems import Problem
from sagaway.engine import parked_step
from sagaway.engine._branches import is_branch, split_position
from sagaway.errors import RunNotFound
from sagaway.store.base import COMPENSATION, RunRecord, Store
from sagaway.store.browse import RunQuery, Stuck

__all__ = [
    "decode_cursor",
    "encode_cursor",
    "find_page",
    "run_detail",
    "run_summary",
    "shared_states",
    "stuck_work",
]


def _json(text: str | None) -> Any:
    return None if not text else json.loads(text)


def _error(text: str | None) -> dict[str, Any] | None:
    doc = _json(text)
    if doc is None:
        return None
    keep = ("type", "message", "phase", "position", "step")
    found = {key: doc.get(key) for key in keep if doc.get(key) is not None}
    original = doc.get("original")
    if isinstance(original, dict):
        found["original"] = {k: original.get(k) for k in ("type", "message", "step")}
    return found


def waiting_for(run: RunRecord) -> dict[str, Any] | None:
    """What a waiting run waits for: a signal, a parked step (its guard refused) or a timer."""
    if run.status != "waiting":
        return None
    step = parked_step(run.wait_name) if run.wait_name else None
    if step is not None:
        return {"kind": "parked", "step": step, "until": run.due_at, "deadline": run.wait_deadline}
    if run.wait_name:
        return {"kind": "signal", "signal": run.wait_name, "deadline": run.wait_deadline}
    return {"kind": "timer", "until": run.due_at}


def run_summary(run: RunRecord) -> dict[str, Any]:
    """A run's row as lists show it."""
    return {
        "id": run.id,
        "saga": run.saga,
        "key": run.key,
        "status": str(run.status),
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "owner": run.owner,
        "due_at": run.due_at,
        "waiting": waiting_for(run),
        "error": _error(run.error),
        "flow": run.flow.to_doc() if run.flow else None,
    }


def encode_cursor(run: RunRecord, by_key: bool) -> str:
    """An opaque cursor for the page after `run`."""
    position = [run.key, run.id] if by_key else [run.created_at, run.id]
    raw = json.dumps(["k" if by_key else "t", *position]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, by_key: bool) -> tuple[Any, str]:
    """The sort position a cursor stands for. Raises Problem 422 for one that is not ours or
    belongs to another ordering."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        mode, value, run_id = json.loads(raw)
        valid = mode == ("k" if by_key else "t") and isinstance(run_id, str)
        valid = valid and isinstance(value, str if by_key else int | float)
    except (binascii.Error, ValueError, TypeError):
        valid = False
    if not valid:
        raise Problem(
            422, "cursor is not one this list gave: pass next_cursor from the previous page "
            "with the same filters",
        )  # fmt: skip
    return value, run_id


def find_page(
    store: Store, query: RunQuery, limit: int, cursor: str | None
) -> tuple[list[RunRecord], str | None]:
    """One page of runs and the cursor of the next (None on the last page). A search that is
    exactly a run's id finds that run."""
    if query.search and cursor is None:
        exact = store.get_run(query.search)
        if exact is not None:
            return [exact], None
    after = decode_cursor(cursor, query.by_key) if cursor else None
    records = store.find_runs(query, limit + 1, after)
    more = len(records) > limit
    records = records[:limit]
    return records, encode_cursor(records[-1], query.by_key) if more else None


def _step(entry: Any) -> dict[str, Any]:
    result = _json(entry.result)
    position, index = entry.position, None
    if is_branch(position):  # a fan-out's branch: its fan-out's position, its item's index
        position, index = split_position(position)
    return {
        "position": position,
        "index": index,
        "phase": entry.phase.label,
        "kind": entry.kind,
        "name": entry.name,
        "status": str(entry.status),
        "attempts": entry.attempts,
        "retries": max(0, entry.attempts - 1),
        "started_at": entry.started_at,
        "finished_at": entry.finished_at,
        "duration_ms": round((entry.finished_at - entry.started_at) * 1000, 3),
        "args": _json(entry.args),
        "result": result,
        "error": _error(entry.error),
    }


def run_detail(store: Store, run_id: str) -> dict[str, Any]:
    """A run with its journal (forward steps by position, then compensations in the order
    they ran), events, unconsumed signals, fork links and what each action would do."""
    run = store.get_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    journal = store.journal(run_id)
    forward = [e for e in journal if e.phase != COMPENSATION]
    undone = sorted(
        (e for e in journal if e.phase == COMPENSATION), key=lambda e: (e.started_at, -e.position)
    )
    origin = store.fork_origin(run_id)
    return {
        **run_summary(run),
        "input": _json(run.input),
        "result": _json(run.result),
        "epoch": run.epoch,
        "recoveries": run.recoveries,
        "pivot_passed": run.pivot_passed,
        "cancel_requested": run.cancel_requested,
        "forked_from": None
        if origin is None
        else {"run_id": origin.origin_id, "from_step": origin.from_step},
        "forks": [
            {"run_id": link.run_id, "from_step": link.from_step} for link in store.forks_of(run_id)
        ],
        "steps": [_step(e) for e in [*forward, *undone]],
        "events": [
            {"id": e.id, "at": e.at, "kind": e.kind, "data": _json(e.data)}
            for e in store.events(run_id=run_id, limit=1000)
        ],
        "pending_signals": [
            {"id": s.id, "name": s.name, "payload": _json(s.payload), "sent_at": s.sent_at}
            for s in store.pending_signals(run_id)
        ],
        "actions": {
            "cancel": cancel_preview(run, journal),
            "redrive": redrive_preview(run, journal),
            "fork": fork_preview(run, journal),
        },
    }


def stuck_work(store: Store, grace: float, limit: int = 50) -> dict[str, Any]:
    """The runs that may need a person, by kind (see `Stuck`); parked runs also per step."""
    now = time.time()
    found: dict[str, Any] = {}
    for kind in Stuck:
        records = store.stuck_runs(kind, now, grace, limit)
        found[kind.value] = [run_summary(r) for r in records]
    per_step: dict[str, int] = {}
    for run in found[Stuck.PARKED.value]:
        step = (run["waiting"] or {}).get("step") or "?"
        per_step[step] = per_step.get(step, 0) + 1
    found["parked_per_step"] = per_step
    return found


def shared_states(store: Store, app: Any) -> dict[str, Any]:
    """Breaker states and rate-limit buckets shared through the store, and the breakers and
    limits the served App declares on its steps (as this process sees them)."""
    now = time.time()
    declared_breakers: dict[str, Any] = {}
    declared_limits: dict[str, Any] = {}
    for step in getattr(app, "steps", {}).values():
        if step.breaker is not None:
            declared_breakers.setdefault(step.breaker.name, []).append(step.name)
        if step.rate_limit is not None:
            declared_limits.setdefault(step.rate_limit.name, []).append(step.name)
    breakers = [
        {
            "name": b.name,
            "state": b.state,
            "until": b.until,
            "seconds_left": max(0.0, b.until - now) if b.state != "closed" else None,
            "steps": declared_breakers.pop(b.name, []),
        }
        for b in store.shared_breakers()
    ]
    breakers += [
        {"name": name, "state": None, "until": None, "seconds_left": None, "steps": steps}
        for name, steps in declared_breakers.items()
    ]
    limits = [
        {
            "name": q.name,
            "tokens": q.tokens,
            "stamp": q.stamp,
            "steps": declared_limits.pop(q.name, []),
        }
        for q in store.shared_buckets()
    ]
    limits += [
        {"name": name, "tokens": None, "stamp": None, "steps": steps}
        for name, steps in declared_limits.items()
    ]
    return {"breakers": breakers, "rate_limits": limits}
