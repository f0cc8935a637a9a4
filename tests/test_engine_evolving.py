"""Changing a saga while runs are in flight: ctx.patched, ctx.deprecate_patch, and the
deploy gate that replays unfinished runs against the new code."""

import json
import subprocess
import sys

import pytest

from sagaway import App, ConfigurationError, SagaCompensated, SagaFailed
from tests.conftest import wait_status
from tests.processes import ROOT

# The saga's code as deployed: 1 (old tax rule), 2 (new rule without a patch: breaks old
# runs), 3 (new rule behind ctx.patched), 4 (the patch deprecated once old runs are gone).
deployed = {"version": 1}


def tax_app(make_app):
    app = make_app()
    done = []

    @app.step
    def reserve(order):
        return order

    @app.step
    def tax_old(order):
        done.append(("old", order))
        return 19

    @app.step
    def tax_new(order):
        done.append(("new", order))
        return 20

    @app.saga()
    def checkout(ctx, order):
        reserve(order)
        version = deployed["version"]
        if version == 1:
            rate = tax_old(order)
        elif version == 2:
            rate = tax_new(order)
        elif version == 3:
            rate = tax_new(order) if ctx.patched("new-tax") else tax_old(order)
        else:
            ctx.deprecate_patch("new-tax")
            rate = tax_new(order)
        ctx.wait("go")
        return rate

    return app, checkout, done


@pytest.fixture(autouse=True)
def _old_code():
    deployed["version"] = 1
    yield
    deployed["version"] = 1


def test_patched_lets_old_runs_finish_on_the_old_path_and_new_runs_take_the_new(make_app):
    app, checkout, done = tax_app(make_app)
    with app:
        old = app.start(checkout, "old-run")
        wait_status(old, "waiting")
        deployed["version"] = 3  # deploy the patched code while the old run sleeps
        new = app.start(checkout, "new-run")
        wait_status(new, "waiting")
        for run in (old, new):
            app.signal(run.id, "go")
        assert old.result(timeout=20) == 19
        assert new.result(timeout=20) == 20
    assert done == [("old", "old-run"), ("new", "new-run")]
    assert [(s.kind, s.name) for s in new.steps][:3] == [
        ("step", "reserve"),
        ("patch", "new-tax"),
        ("step", "tax_new"),
    ]
    # Later: the patch deprecated. A run that recorded it still replays correctly.
    with app:
        again = app.start(checkout, "patched-run")
        wait_status(again, "waiting")
        deployed["version"] = 4
        app.signal(again.id, "go")
        assert again.result(timeout=20) == 20


def test_without_a_patch_the_changed_code_fails_old_runs_with_non_determinism(make_app):
    app, checkout, _ = tax_app(make_app)
    with app:
        old = app.start(checkout, "old-run")
        wait_status(old, "waiting")
        deployed["version"] = 2
        app.signal(old.id, "go")
        with pytest.raises(SagaFailed, match="records step 'tax_old'"):
            old.result(timeout=20)


def test_the_gate_flags_the_unpatched_change_and_passes_the_patched_one(make_app):
    app, checkout, _ = tax_app(make_app)
    with app:
        runs = [app.start(checkout, f"o-{n}") for n in range(3)]
        for run in runs:
            wait_status(run, "waiting")
    deployed["version"] = 2
    found = [d for _, d in app.check_runs() if d is not None]
    assert sorted(d.run_id for d in found) == sorted(r.id for r in runs)
    assert {(d.position, d.recorded, d.found) for d in found} == {
        (1, "step tax_old", "step tax_new")
    }
    deployed["version"] = 3
    assert [d for _, d in app.check_runs() if d is not None] == []
    assert len(list(app.check_runs())) == 3
    # The gate wrote nothing: the runs still wait, their journals as they were.
    assert [len(r.steps) for r in runs] == [2, 2, 2]


def test_a_patch_needs_a_name(make_app):
    app = make_app()

    @app.saga()
    def saga_(ctx):
        return ctx.patched("")

    with app:
        with pytest.raises(SagaCompensated) as caught:  # nothing to undo: a clean rollback
            app.start(saga_).result(timeout=20)
    assert isinstance(caught.value.error, ConfigurationError)


MODULE = """
from sagaway import App

app = App()
VERSION = {version}

@app.step
def reserve(order):
    return order

@app.step
def charge(order):
    return order

@app.saga()
def checkout(ctx, order):
    if VERSION == 1:
        reserve(order)
        charge(order)
    else:
        charge(order)
        reserve(order)
    ctx.wait("go")
"""


def test_runs_check_exits_1_listing_diverging_runs_and_0_when_none(tmp_path):
    db = tmp_path / "shop.db"
    env = {"SAGAWAY_DB": str(db), "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    (tmp_path / "shop_v1.py").write_text(MODULE.format(version=1))
    (tmp_path / "shop_v2.py").write_text(MODULE.format(version=2))
    starter = (
        "from shop_v1 import app, checkout\n"
        "with app:\n"
        "    runs = [app.start(checkout, f'o-{n}') for n in range(4)]\n"
        "    import time\n"
        "    while any(r.status != 'waiting' for r in runs): time.sleep(0.02)\n"
        "app.close()\n"
    )
    import os

    full_env = {**os.environ, **env}
    full_env.pop("CI", None)
    subprocess.run([sys.executable, "-c", starter], cwd=tmp_path, env=full_env, check=True)

    def check(target, *extra):
        return subprocess.run(
            [sys.executable, "-m", "sagaway.cli", "runs", "check", target, *extra],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
        )

    same = check("shop_v1:app")
    assert same.returncode == 0, same.stderr
    assert "4 unfinished run(s) checked: none would diverge" in same.stdout
    changed = check("shop_v2:app", "--json")
    assert changed.returncode == 1, changed.stderr
    report = json.loads(changed.stdout)
    assert report["checked"] == 4
    assert len(report["diverging"]) == 4
    first = report["diverging"][0]
    assert (first["position"], first["recorded"], first["found"]) == (
        0,
        "step reserve",
        "step charge",
    )
    assert set(first) == {"run_id", "saga", "status", "position", "recorded", "found", "message"}
    table = check("shop_v2:app")
    assert table.returncode == 1
    assert "4 of 4 unfinished run(s) would diverge" in table.stdout
    app = App(f"sqlite:///{db}")
    try:
        assert {r.status for r in app.runs()} == {"waiting"}  # the gate changed nothing
    finally:
        app.close()
