"""Shared fixtures. Under CI=true, services a test needs must be there: no skipping."""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from urllib.parse import urlencode

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


POSTGRES_URL = os.environ.get("SAGAWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
_postgres_problem: list[str | None] = []


def postgres_problem() -> str | None:
    """Why the test PostgreSQL server cannot be used, or None when it can (checked once)."""
    if not _postgres_problem:
        try:
            import psycopg

            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
            _postgres_problem.append(None)
        except Exception as exc:  # ImportError, OperationalError, ...
            _postgres_problem.append(f"{type(exc).__name__}: {str(exc).strip()}")
    return _postgres_problem[0]


@contextmanager
def postgres_schema(**options: object):
    """The URL of a fresh schema on the test server, dropped afterwards."""
    problem = postgres_problem()
    require(
        problem is None,
        f"no PostgreSQL server at {POSTGRES_URL} ({problem}): start one or point "
        "$SAGAWAY_TEST_POSTGRES at one (.ci/run starts it)",
    )
    schema = f"test_{uuid.uuid4().hex[:16]}"
    query = urlencode({"schema": schema, **options})
    try:
        yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}{query}"
    finally:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path):
    """A fresh, empty store of each backend: a SQLite file, or a PostgreSQL schema of its
    own on the server named by $SAGAWAY_TEST_POSTGRES."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/sagaway.db"
        return
    with postgres_schema() as url:
        yield url


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


# --- a PostgreSQL server of the fault tests' own ----------------------------------------------
@pytest.fixture(scope="session")
def own_postgres():
    """A PostgreSQL server started for the fault tests alone (on a free port of 127.0.0.1),
    which they restart, stop and cut off; the shared server is never touched. Tests using it
    share one xdist group, so one server serves them all."""
    import tempfile
    from pathlib import Path

    from tests.pgserver import PostgresServer, postgres_binaries

    require(
        postgres_binaries() is not None,
        "no PostgreSQL binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)",
    )
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="sagaway-faults-pg-")))
    try:
        server.start()
        yield server
    finally:
        server.destroy()
