"""What every request handler shares: the App, its store, the settings and the views that
keep state between requests. (Imported once FastAPI is known to be installed.)"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from sagaway.api._auth import Principal, authenticate, require
from sagaway.api._monitoring import AlarmViews, SloViews
from sagaway.api._operations import Operations
from sagaway.api.access import Role
from sagaway.api.settings import ApiSettings
from sagaway.engine.app import App
from sagaway.store.base import Store

__all__ = ["ApiState"]


class ApiState:
    """The served App and everything derived from it once."""

    def __init__(self, app: App, settings: ApiSettings) -> None:
        self.app = app
        self.settings = settings
        self.operations = Operations(app)
        self.slos = SloViews(settings)
        self.alarms = AlarmViews(settings, app.store)

    def close(self) -> None:
        """Stop what the state runs in the background (the alarm evaluation)."""
        self.alarms.close()

    @property
    def store(self) -> Store:
        """The App's store."""
        return self.app.store

    def principal(self, request: Any) -> Principal | None:
        """Who sent `request`, or None."""
        return authenticate(self.store, request.headers, request.cookies)

    def needs(self, role: Role) -> Any:
        """A FastAPI dependency admitting requests whose role allows what `role` may do."""

        def dependency(request: Request) -> Principal:
            csrf = request.headers.get("x-csrf-token")
            return require(self.principal(request), role, request.method, csrf)

        return dependency
