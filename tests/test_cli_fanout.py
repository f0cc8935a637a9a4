"""`sagaway runs show` and `runs list --parent` on sagas that fan out."""

import json

from sagaway import Permanent
from sagaway.cli import main


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def nightly_app(app):
    @app.step
    def sync(tenant):
        if tenant == "t1":
            raise Permanent("tenant t1 is suspended")
        return f"synced {tenant}"

    @app.saga()
    def tenant_sync(ctx, tenant):
        return sync(tenant)

    @app.saga()
    def nightly(ctx, tenants):
        ctx.map(sync, tenants, concurrency=2, tolerated_failures=1)
        ctx.map(tenant_sync, tenants, tolerated_failures=0.5)
        return "done"

    return nightly


def test_runs_show_groups_branches_under_their_map_with_counts(app, capsys):
    nightly = nightly_app(app)
    with app:
        run = app.start(nightly, ["t0", "t1", "t2"])
        assert run.result(timeout=30) == "done"
    code, out, _ = cli(capsys, "runs", "show", run.id, "--db", app.url)
    assert code == 0
    assert out.count("3 items: 2 done, 1 failed, 0 running, 0 parked") == 2
    assert "map sync at 0: branches that failed" in out
    assert "children tenant_sync at 1: branches that failed" in out
    assert "tenant t1 is suspended" in out
    code, out, _ = cli(capsys, "runs", "show", run.id, "--db", app.url, "--json")
    shown = json.loads(out)["steps"]
    assert [(s["kind"], s["name"], s["status"]) for s in shown] == [
        ("map", "sync", "ok"),
        ("children", "tenant_sync", "ok"),
    ]
    assert shown[0]["counts"] == {"items": 3, "done": 2, "failed": 1, "running": 0, "parked": 0}
    assert [(b["index"], b["status"]) for b in shown[1]["branches"]] == [
        (0, "ok"), (1, "failed"), (2, "ok"),
    ]  # fmt: skip


def test_runs_list_parent_lists_the_children_of_a_run_by_item(app, capsys):
    nightly = nightly_app(app)
    with app:
        run = app.start(nightly, ["t0", "t1", "t2"])
        run.result(timeout=30)
    code, out, _ = cli(capsys, "runs", "list", "--parent", run.id, "--db", app.url, "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(c["item"], c["saga"], c["status"]) for c in listed] == [
        ("1.0", "tenant_sync", "succeeded"),
        ("1.1", "tenant_sync", "compensated"),
        ("1.2", "tenant_sync", "succeeded"),
    ]
    assert {c["parent_id"] for c in listed} == {run.id}
    code, out, _ = cli(capsys, "runs", "list", "--parent", run.id, "--status", "compensated",
                       "--db", app.url)  # fmt: skip
    assert code == 0 and "children of run" in out and out.count("tenant_sync") == 1
    code, _, err = cli(capsys, "runs", "list", "--parent", "nope", "--db", app.url)
    assert code == 2 and "no run with id 'nope'" in err
