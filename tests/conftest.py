"""Shared fixtures. Under CI=true, services a test needs must be there: no skipping."""

from __future__ import annotations

import os
import time

import pytest

from sagaway import App, Retry

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip (outside CI) or fail (under CI) when a needed service or tool is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


# --- engine fixtures ---------------------------------------------------------------------
FAST = Retry(attempts=3, base=0.001, cap=0.005)


@pytest.fixture(params=["sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty store of each backend."""
    return f"sqlite:///{tmp_path}/sagaway.db"


@pytest.fixture
def make_app(store_url: str):
    """Build Apps on the test's store with fast retries; all are closed afterwards."""
    apps: list[App] = []

    def make(**options) -> App:
        options.setdefault("lease", 3.0)
        options.setdefault("retry", FAST)
        options.setdefault("compensation_retry", FAST)
        app = App(store_url, **options)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app) -> App:
    """An App on a fresh store (launch it with `with app:`)."""
    return make_app()


def wait_for(condition, timeout: float = 10.0, interval: float = 0.01, what: str = "condition"):
    """Poll `condition()` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def wait_status(run, *statuses: str, timeout: float = 10.0) -> str:
    """Wait until `run` is in one of `statuses`; return the status."""
    return wait_for(
        lambda: run.status if run.status in statuses else None,
        timeout,
        what=f"run {run.id} to be {'/'.join(statuses)} (is {run.status})",
    )
