"""The dashboard's sign-in and run pages: the runs table with filters and search, a run's
step timeline, and the actions, each behind a confirmation page that says what will happen.
Forms post back here with the session's CSRF token; the changes go through `_operations`
like the API's, audited."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sagaway.api import _pages_runs as pages
from sagaway.api._auth import SESSION_COOKIE, Principal, open_session, require, same_token
from sagaway.api._html import layout
from sagaway.api._monitoring import prometheus_text
from sagaway.api._pages_ops import ops_pages
from sagaway.api._problems import Problem
from sagaway.api._routes import run_query
from sagaway.api._state import ApiState
from sagaway.api.access import Role, digest
from sagaway.errors import SagawayError
from sagaway.store.browse import RunQuery

__all__ = ["dashboard_router"]

LOGIN_COOKIE = "sagaway_login"


def _base(request: Request) -> str:
    return request.scope.get("root_path", "")


def dashboard_router(state: ApiState) -> APIRouter:
    """The dashboard's routes, bound to `state`."""
    router = APIRouter(include_in_schema=False)
    settings = state.settings

    def page(request: Request, needed: Role = Role.VIEWER) -> Principal:
        return require(state.principal(request), needed, "GET", None)

    async def form_of(request: Request, needed: Role) -> tuple[Principal, Any]:
        form = await request.form()
        csrf = form.get("csrf")
        who = require(state.principal(request), needed, "POST", str(csrf) if csrf else "")
        return who, form

    def html(title: str, body: str, request: Request, who: Principal | None, active: str = ""):
        return HTMLResponse(layout(title, body, base=_base(request), active=active, who=who))

    # --- signing in ----------------------------------------------------------------------
    @router.get("/login")
    def login_page(request: Request, failed: int = 0) -> Response:
        nonce = secrets.token_urlsafe(16)
        note = '<p class="error">That token is not known or was revoked.</p>' if failed else ""
        body = (
            f'<div class="card login">{note}<form method="post" action="{_base(request)}/login">'
            f'<input type="hidden" name="csrf" value="{nonce}">'
            '<p><label for="token">API token</label><br>'
            '<input id="token" name="token" type="password" autocomplete="off" required '
            'placeholder="sgw_…"></p><p><button type="submit">Sign in</button></p>'
            '<p class="kind">Create one with <span class="mono">sagaway tokens create '
            "--role operator</span>.</p></form></div>"
        )
        response = html("Sign in", body, request, None)
        response.set_cookie(
            LOGIN_COOKIE, nonce, max_age=900, httponly=True, samesite="strict",
            secure=settings.secure_cookies, path=_base(request) or "/",
        )  # fmt: skip
        return response

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        base = _base(request)
        if not same_token(str(form.get("csrf") or ""), request.cookies.get(LOGIN_COOKIE)):
            raise Problem(403, "the sign-in form expired: open the sign-in page again")
        token = state.store.token_by_hash(digest(str(form.get("token") or "").strip()))
        if token is None:
            return RedirectResponse(f"{base}/login?failed=1", status_code=303)
        cookie, _, _ = open_session(state.store, token, settings.session_hours)
        response = RedirectResponse(f"{base}/runs", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, cookie, max_age=int(settings.session_hours * 3600), httponly=True,
            samesite="strict", secure=settings.secure_cookies, path=base or "/",
        )  # fmt: skip
        response.delete_cookie(LOGIN_COOKIE, path=base or "/")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        who, _ = await form_of(request, Role.VIEWER)
        if who.session is not None:
            state.store.end_session(who.session)
        response = RedirectResponse(f"{_base(request)}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=_base(request) or "/")
        return response

    @router.get("/")
    def home(request: Request) -> Response:
        return RedirectResponse(f"{_base(request)}/runs", status_code=303)

    # --- runs ----------------------------------------------------------------------------
    @router.get("/runs")
    def runs(request: Request) -> Response:
        who = page(request)
        params = request.query_params
        query = run_query(
            [s for s in params.getlist("status") if s] or None,
            params.get("saga"),
            None,
            params.get("q"),
            None,
            None,
        )
        body = pages.runs_page(state.store, query, params.get("cursor"), _base(request), who)
        return html("Runs", body, request, who, "runs")

    @router.get("/runs/{run_id}")
    def run_page(request: Request, run_id: str) -> Response:
        who = page(request)
        params = request.query_params
        body = pages.run_page(
            state.store, run_id, _base(request), who, params.get("done"), params.get("error")
        )
        return html(f"Run {run_id}", body, request, who, "runs")

    @router.get("/runs/{run_id}/confirm/{action}")
    def confirm(request: Request, run_id: str, action: str) -> Response:
        who = page(request, Role.OPERATOR)
        step = request.query_params.get("from_step")
        from_step = int(step) if step and step.isdigit() else None
        body = pages.confirm_page(state.store, run_id, action, from_step, _base(request), who)
        return html(f"Confirm: {action}", body, request, who, "runs")

    @router.post("/runs/{run_id}/{action}")
    async def act(request: Request, run_id: str, action: str) -> Response:
        who, form = await form_of(request, Role.OPERATOR)
        base = _base(request)
        ops = state.operations
        target = run_id
        try:
            if action == "cancel":
                done = f"cancel requested: the run compensates ({ops.cancel(who, run_id)})"
            elif action == "redrive":
                done = f"redriven: now {ops.redrive(who, run_id)}; a worker resumes it"
            elif action == "fork":
                from_step = int(str(form.get("from_step") or "0"))
                key = str(form.get("key") or "") or None
                target = ops.fork(who, run_id, from_step, key)
                done = f"forked from {run_id} at position {from_step}"
            elif action == "signal":
                name = str(form.get("name") or "").strip()
                text = str(form.get("payload") or "").strip() or "null"
                try:
                    payload = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise Problem(422, f"the payload is not JSON ({exc.msg})") from None
                if not name:
                    raise Problem(422, "name the signal to send")
                ops.signal(who, run_id, name, payload)
                done = f"signal {name!r} sent"
            else:
                raise Problem(404, f"no action {action!r}: cancel, redrive, fork or signal")
        except (SagawayError, Problem, ValueError) as exc:
            detail = exc.detail if isinstance(exc, Problem) else str(exc)
            return RedirectResponse(
                f"{base}/runs/{run_id}?{urlencode({'error': detail})}", status_code=303
            )
        return RedirectResponse(
            f"{base}/runs/{target}?{urlencode({'done': done})}", status_code=303
        )

    @router.get("/bulk/{action}")
    def bulk_confirm(request: Request, action: str) -> Response:
        who = page(request, Role.OPERATOR)
        query = _bulk_query(request.query_params)
        body = pages.bulk_page(state, action, query, request.query_params, _base(request), who)
        return html(f"Bulk {action}", body, request, who, "runs")

    @router.post("/bulk/{action}")
    async def bulk(request: Request, action: str) -> Response:
        who, form = await form_of(request, Role.OPERATOR)
        if action not in ("cancel", "redrive"):
            raise Problem(404, f"no bulk action {action!r}: cancel or redrive")
        result = state.operations.bulk(who, action, _bulk_query(form), dry_run=False)
        body = pages.bulk_done(result, _base(request))
        return html(f"Bulk {action}: done", body, request, who, "runs")

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        page(request)  # a bearer token (Prometheus' scrape) or a browser session
        return Response(prometheus_text(state.store), media_type="text/plain; version=0.0.4")

    router.include_router(ops_pages(state, page, html))
    return router


def _bulk_query(params: Any) -> RunQuery:
    statuses = [s for s in params.getlist("status") if s] if hasattr(params, "getlist") else []
    return run_query(statuses or None, params.get("saga"), None, params.get("q"), None, None)
