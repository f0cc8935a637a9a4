"""Every route of the API against every kind of caller: no credentials (401), a role that may
not (403), and one that may (2xx); and the OpenAPI document fuzzed with schemathesis: no 5xx,
every response as the document says."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sagaway.api import create_app
from sagaway.api.access import cli_actor, issue_token
from tests.apps.shop_api import declare_shop
from tests.conftest import wait_status

ROLES = ("viewer", "operator", "admin")
# (method, path template, JSON body, the least role that may)
ROUTES = [
    ("GET", "/api/v1/runs", None, "viewer"),
    ("GET", "/api/v1/runs/{failed}", None, "viewer"),
    ("POST", "/api/v1/runs/{waiting}/signals/other", {"a": 1}, "operator"),
    ("POST", "/api/v1/runs/{waiting}/cancel", None, "operator"),
    ("POST", "/api/v1/runs/{failed}/redrive", None, "operator"),
    ("POST", "/api/v1/runs/{failed}/fork", {"from_step": 0}, "operator"),
    ("POST", "/api/v1/bulk/cancel", {"q": "none-such"}, "operator"),
    ("POST", "/api/v1/bulk/redrive", {"q": "none-such"}, "operator"),
    ("GET", "/api/v1/stuck", None, "viewer"),
    ("GET", "/api/v1/breakers", None, "viewer"),
    ("GET", "/api/v1/rate-limits", None, "viewer"),
    ("GET", "/api/v1/topics", None, "viewer"),
    ("GET", "/api/v1/groups", None, "viewer"),
    ("GET", "/api/v1/dead-letters", None, "viewer"),
    ("POST", "/api/v1/dead-letters/redrive", {"group": "g"}, "operator"),
    ("GET", "/api/v1/slos", None, "viewer"),
    ("GET", "/api/v1/alarms", None, "viewer"),
    ("GET", "/api/v1/audit", None, "viewer"),
    ("GET", "/api/v1/tokens", None, "admin"),
    ("POST", "/api/v1/tokens", {"role": "viewer"}, "admin"),
    ("DELETE", "/api/v1/tokens/{token}", None, "admin"),
    ("GET", "/api/v1/metrics", None, "viewer"),
    ("GET", "/metrics", None, "viewer"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from sagaway import App
    from tests.conftest import FAST

    app = App(f"sqlite:///{tmp_path_factory.mktemp('auth')}/s.db", retry=FAST,
              compensation_retry=FAST)  # fmt: skip
    state = {"refund_broken": True}
    sagas = declare_shop(app, state)
    tokens = {r: issue_token(app.store, r, r, cli_actor())[1] for r in ROLES}
    app.consumer("mail", group="g")(lambda msg: None)
    with app:
        app.publish("mail", {"n": 1})
        yield app, sagas, TestClient(create_app(app)), tokens
    app.close()


def targets(app, sagas) -> dict[str, str]:
    """A fresh failed run, waiting run and token for one request."""
    failed = app.start(sagas["checkout"], "x")
    waiting = app.start(sagas["confirm"], "y")
    wait_status(failed, "failed")
    wait_status(waiting, "waiting")
    token = issue_token(app.store, "viewer", "victim", cli_actor())[0].id
    return {"failed": failed.id, "waiting": waiting.id, "token": token}


@pytest.mark.parametrize(("method", "path", "body", "least"), ROUTES)
def test_each_route_answers_401_403_or_2xx_by_role(served, method, path, body, least):
    app, sagas, client, tokens = served
    url = path.format(**targets(app, sagas))
    response = client.request(method, url, json=body)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    for role in ROLES:
        url = path.format(**targets(app, sagas))
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        response = client.request(method, url, json=body, headers=headers)
        if ROLES.index(role) < ROLES.index(least):
            assert response.status_code == 403, (role, response.text)
        else:
            assert 200 <= response.status_code < 300, (role, response.text)


def test_a_malformed_authorization_header_is_refused(served):
    _, _, client, _ = served
    for header in ("Basic abc", "Bearer ", "Bearer sgw_not-a-token"):
        response = client.get("/api/v1/runs", headers={"Authorization": header})
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_the_openapi_document_fuzzed_gives_no_server_error_and_matches_its_schema(served):
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    CHECKS = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    from hypothesis import HealthCheck, given, settings

    _app, _, client, tokens = served
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", client.app)
    headers = {"Authorization": f"Bearer {tokens['admin']}"}
    problems = []
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # collect every operation's first failure
            problems.append(f"{op.method.upper()} {op.path}: {exc}")
    assert not problems, "\n".join(problems)
