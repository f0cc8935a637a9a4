"""The ASGI application: the JSON API, the dashboard, static assets and /metrics, with
problem details for every error and headers that keep pages from loading anything from
elsewhere."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from sagaway.api._problems import Problem, problem_body, problem_for
from sagaway.api.settings import ApiSettings
from sagaway.engine.app import App
from sagaway.errors import ConfigurationError, SagawayError

__all__ = ["build"]

log = logging.getLogger("sagaway.api")

# Pages load scripts, styles and images from this server only; no page may be framed
# elsewhere (clickjacking of the action buttons).
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' "
    "'unsafe-inline'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "SAMEORIGIN",
}


def local_path(request: Any) -> str:
    """The request's path inside this application (without the prefix it is mounted at)."""
    root = request.scope.get("root_path", "")
    path: str = request.scope.get("path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _fastapi() -> Any:
    try:
        import fastapi
    except ImportError:
        raise ConfigurationError(
            "the HTTP API needs FastAPI, which is not installed: pip install 'sagaway[api]'"
        ) from None
    return fastapi


def build(app: App, settings: ApiSettings | None = None) -> Any:
    """The FastAPI application for `app` (see `sagaway.api.create_app`)."""
    fastapi = _fastapi()
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException

    from sagaway.api._dashboard import dashboard_router
    from sagaway.api._html import esc, layout
    from sagaway.api._routes import api_router
    from sagaway.api._state import ApiState

    settings = settings or ApiSettings()
    state = ApiState(app, settings)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        state.close()  # mounted in another app, its lifespan is not run: the thread is a daemon

    server = fastapi.FastAPI(
        lifespan=lifespan,
        title="sagaway operations API",
        version="1",
        description="Find, understand and mend saga runs. Authenticate with "
        "'Authorization: Bearer TOKEN' (`sagaway tokens create`). Errors are RFC 9457 "
        "problem details.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # Swagger UI loads its assets from a CDN: nothing is loaded from elsewhere
        redoc_url=None,
    )
    server.state.sagaway = state

    def problem_response(request: Any, status: int, detail: str, **extra: Any) -> Any:
        body = problem_body(status, detail, request.url.path, **extra)
        headers = {"www-authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(
            body, status_code=status, media_type="application/problem+json", headers=headers
        )

    @server.exception_handler(Problem)
    def _problem(request: Any, exc: Problem) -> Any:
        path = local_path(request)
        if exc.status == 401 and not path.startswith("/api/") and path != "/metrics":
            base = request.scope.get("root_path", "")
            return RedirectResponse(f"{base}/login", status_code=303)
        if not path.startswith("/api/") and path != "/metrics":
            return error_page(request, exc.status, exc.detail)
        return problem_response(request, exc.status, exc.detail, **exc.extra)

    def error_page(request: Any, status: int, detail: str) -> Any:
        base = request.scope.get("root_path", "")
        body = f'<p class="error">{esc(detail)}</p><p><a href="{base}/runs">Back to runs</a></p>'
        page = layout(problem_body(status, detail)["title"], body, base=base)
        return HTMLResponse(page, status_code=status)

    @server.exception_handler(SagawayError)
    def _sagaway(request: Any, exc: SagawayError) -> Any:
        problem = problem_for(exc)
        if problem.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        if not local_path(request).startswith("/api/"):
            return error_page(request, problem.status, problem.detail)
        return problem_response(request, problem.status, problem.detail)

    @server.exception_handler(RequestValidationError)
    def _invalid(request: Any, exc: RequestValidationError) -> Any:
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['where']}: {e['problem']}" for e in errors)
        return problem_response(request, 422, detail or "invalid request", errors=errors)

    @server.exception_handler(HTTPException)
    def _http(request: Any, exc: HTTPException) -> Any:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            detail = f"no such resource: {request.url.path} (see /api/v1/openapi.json)"
        return problem_response(request, exc.status_code, detail)

    @server.exception_handler(Exception)
    def _unexpected(request: Any, exc: Exception) -> Any:
        log.exception("%s %s failed", request.method, request.url.path)
        return problem_response(request, 500, f"unexpected {type(exc).__name__}; see the log")

    @server.middleware("http")
    async def _headers(request: Any, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        # How long the server took, for browsers' dev tools and bench/api.py.
        elapsed = (time.perf_counter() - started) * 1000
        response.headers["server-timing"] = f"app;dur={elapsed:.2f}"
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if local_path(request).startswith("/api/") or "text/html" in response.headers.get(
            "content-type", ""
        ):
            response.headers.setdefault("cache-control", "no-store")
        return response

    static = resources.files("sagaway.api").joinpath("static")
    server.mount("/static", StaticFiles(directory=str(static)), name="static")
    server.include_router(api_router(state), prefix="/api/v1")
    server.include_router(dashboard_router(state))
    return server
