"""The API on sagas that fan out: branches at their map's position with their index, the
compensations a cancel would run in the engine's order, forks offered at top-level positions."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sagaway.api import create_app
from sagaway.api.access import cli_actor, issue_token
from tests.conftest import wait_status


def test_a_map_shows_its_branches_and_a_cancel_preview_lists_them(make_app):
    app = make_app()

    @app.step
    def sync(i):
        return i

    @sync.compensation
    def unsync(i, result=None):
        pass

    @app.saga()
    def nightly(ctx):
        ctx.map(sync, [0, 1, 2], concurrency=1)
        ctx.wait("go")
        return "done"

    app.launch()
    client = TestClient(create_app(app))
    token = issue_token(app.store, "viewer", "viewer-token", cli_actor())[1]
    run = app.start(nightly)
    wait_status(run, "waiting")
    detail = client.get(
        f"/api/v1/runs/{run.id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    rows = [(s["position"], s["index"], s["kind"]) for s in detail["steps"]]
    assert rows[0] == (0, None, "map")
    assert sorted(rows[1:]) == [(0, 0, "step"), (0, 1, "step"), (0, 2, "step")]
    undo = detail["actions"]["cancel"]["compensations"]
    assert [(c["position"], c["index"]) for c in undo] == [(0, 2), (0, 1), (0, 0)]
    assert detail["actions"]["fork"]["positions"] == 1  # the map, its branches with it
