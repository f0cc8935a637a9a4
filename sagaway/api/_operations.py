"""The changes a person makes through the API or the dashboard, each written to the audit
log with its outcome (done, or refused and why) before the answer goes back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sagaway.api._auth import Principal
from sagaway.api.access import actor_name, audit
from sagaway.engine.app import App
from sagaway.errors import SagawayError
from sagaway.store.base import RunStatus
from sagaway.store.browse import RunQuery

__all__ = ["BULK_LIMIT", "Operations"]

BULK_LIMIT = 1000  # runs one bulk request changes at most; repeat it for more
_CANCELLABLE = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING)


class Operations:
    """Signal, cancel, redrive and fork runs, one by one or by filter, audited."""

    def __init__(self, app: App) -> None:
        self.app = app

    def _audited(
        self,
        who: Principal,
        action: str,
        run_id: str | None,
        detail: dict[str, Any],
        work: Callable[[], Any],
    ) -> Any:
        actor = actor_name(who.token)
        try:
            value = work()
        except SagawayError as exc:
            audit(self.app.store, actor, action, run_id, detail, f"refused: {exc}")
            raise
        audit(self.app.store, actor, action, run_id, detail)
        return value

    def signal(self, who: Principal, run_id: str, name: str, payload: Any) -> None:
        """Send signal `name` with `payload` to a run."""
        detail = {"signal": name, "payload": payload}
        self._audited(
            who, "run.signal", run_id, detail, lambda: self.app.signal(run_id, name, payload)
        )

    def cancel(self, who: Principal, run_id: str) -> RunStatus:
        """Ask a run to stop and compensate; return its status."""
        run = self._audited(who, "run.cancel", run_id, {}, lambda: self.app.cancel(run_id))
        return run.record.status

    def redrive(self, who: Principal, run_id: str) -> RunStatus:
        """Resume a failed run where it stopped; return its status."""
        run = self._audited(who, "run.redrive", run_id, {}, lambda: self.app.redrive(run_id))
        return run.record.status

    def fork(self, who: Principal, run_id: str, from_step: int, key: str | None) -> str:
        """Fork a run from a journal position; return the new run's id."""
        detail: dict[str, Any] = {"from_step": from_step, "key": key}

        def work() -> str:
            run = self.app.fork(run_id, from_step, key=key)
            detail["fork"] = run.id
            return run.id

        return self._audited(who, "run.fork", run_id, detail, work)

    @staticmethod
    def bulk_query(action: str, query: RunQuery) -> RunQuery | None:
        """The runs a bulk action may apply to among those `query` selects (cancel takes
        runs that have not ended, redrive failed ones); None when the filter's statuses
        leave none."""
        allowed = _CANCELLABLE if action == "cancel" else (RunStatus.FAILED,)
        wanted = [s for s in (query.statuses or allowed) if s in allowed]
        if not wanted:
            return None
        return RunQuery(
            statuses=tuple(wanted),
            saga=query.saga,
            key=query.key,
            search=query.search,
            created_after=query.created_after,
            created_before=query.created_before,
        )

    def bulk(self, who: Principal, action: str, query: RunQuery, dry_run: bool) -> dict[str, Any]:
        """Cancel or redrive every run `query` selects (at most BULK_LIMIT); with `dry_run`,
        only count them. The whole request is one audit entry listing each run's outcome."""
        target = self.bulk_query(action, query)
        if target is None:
            return {"action": action, "dry_run": dry_run, "matched": 0, "done": [], "refused": []}
        if dry_run:
            matched = self.app.store.count_matching(target, BULK_LIMIT + 1)
            sample = [r.id for r in self.app.store.find_runs(target, 20)]
            return {
                "action": action,
                "dry_run": True,
                "matched": min(matched, BULK_LIMIT),
                "more": matched > BULK_LIMIT,
                "sample": sample,
                "done": [],
                "refused": [],
            }
        runs = self.app.store.find_runs(target, BULK_LIMIT)
        done: list[str] = []
        refused: list[dict[str, str]] = []
        step = self.app.cancel if action == "cancel" else self.app.redrive
        for run in runs:
            try:
                step(run.id)
                done.append(run.id)
            except SagawayError as exc:  # e.g. the run ended since it was listed
                refused.append({"run_id": run.id, "reason": str(exc)})
        detail = {
            "filter": {k: v for k, v in vars(target).items() if v not in (None, ())},
            "done": done,
            "refused": refused,
        }
        outcome = "ok" if not refused else f"refused for {len(refused)} of {len(runs)}"
        audit(self.app.store, actor_name(who.token), f"bulk.{action}", None, detail, outcome)
        return {
            "action": action,
            "dry_run": False,
            "matched": len(runs),
            "more": len(runs) == BULK_LIMIT,
            "done": done,
            "refused": refused,
            "at": time.time(),
        }
