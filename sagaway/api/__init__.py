"""The operations HTTP API and dashboard: find, understand and mend runs over HTTP.

`create_app(app)` builds the ASGI application (FastAPI) for an `App`; mount it in your own
ASGI application or serve it with `sagaway serve --db URL`. Needs `pip install
'sagaway[api]'`. Tokens (`sagaway tokens create`) carry a role: viewer reads, operator also
signals, cancels, redrives and forks, admin also manages tokens. Every change is written to
the audit log. docs/api.md lists the routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagaway.api.access import Role

if TYPE_CHECKING:
    from sagaway.api.settings import ApiSettings
    from sagaway.engine.app import App

__all__ = ["Role", "create_app"]


def create_app(app: App, settings: ApiSettings | None = None) -> Any:
    """The ASGI application serving the JSON API under `/api/v1`, the dashboard under `/`
    and Prometheus metrics at `/metrics`, for the runs of `app`'s store.

    Raises ConfigurationError naming `pip install 'sagaway[api]'` when FastAPI is missing.
    """
    from sagaway.api._server import build

    return build(app, settings)
