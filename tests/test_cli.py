"""The `sagaway` command: runs list/show/signal/cancel/redrive, worker, metrics; its errors."""

import json

import pytest

from sagaway import Permanent
from sagaway.cli import main
from tests.conftest import wait_status


@pytest.fixture
def shop(make_app, tmp_path):
    app = make_app()

    @app.step
    def reserve(order):
        return f"hold-{order}"

    @reserve.compensation
    def release(order):
        pass

    @app.step
    def charge(order):
        if order == "bad":
            raise Permanent("card declined")
        return f"charge-{order}"

    @app.saga()
    def checkout(ctx, order):
        reserve(order)
        ctx.wait("confirmed")
        return charge(order)

    return app, checkout


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_list_and_show_print_the_journal(shop, capsys):
    app, checkout = shop
    with app:
        good = app.start(checkout, "o1", key="cart-1")
        wait_status(good, "waiting")
        code, out, _ = cli(capsys, "runs", "list", "--db", app.url)
        assert code == 0 and good.id in out and "waiting" in out
        code, out, _ = cli(capsys, "runs", "signal", good.id, "confirmed", "{}", "--db", app.url)
        assert code == 0 and "sent signal 'confirmed'" in out
        good.result(timeout=10)
    code, out, _ = cli(capsys, "runs", "show", good.id, "--db", app.url)
    assert code == 0
    assert "succeeded" in out and "reserve" in out and "charge-o1" in out
    code, out, _ = cli(capsys, "runs", "show", good.id, "--db", app.url, "--json")
    shown = json.loads(out)
    assert [s["name"] for s in shown["steps"]] == ["reserve", "confirmed", "charge"]
    code, out, _ = cli(capsys, "runs", "list", "--status", "succeeded", "--json", "--db", app.url)
    assert [r["id"] for r in json.loads(out)] == [good.id]


def test_cancel_and_redrive_from_the_command_line(shop, capsys):
    app, checkout = shop
    with app:
        run = app.start(checkout, "o2")
        wait_status(run, "waiting")
        code, out, _ = cli(capsys, "runs", "cancel", run.id, "--db", app.url)
        assert code == 0 and "cancel requested" in out
        wait_status(run, "cancelled")
    code, _, err = cli(capsys, "runs", "redrive", run.id, "--db", app.url)
    assert code == 2 and "only failed runs can be redriven" in err


def test_runs_prune_deletes_what_ended_long_ago_and_refuses_a_bad_age(shop, capsys):
    app, checkout = shop
    with app:
        done = app.start(checkout, "o4")
        wait_status(done, "waiting")
        app.signal(done.id, "confirmed", {})
        done.result(timeout=10)
        pending = app.start(checkout, "o5")
        wait_status(pending, "waiting")
    code, _, err = cli(capsys, "runs", "prune", "--older-than", "soon", "--db", app.url)
    assert code == 2 and "--older-than: 'soon' is not a duration" in err
    code, out, _ = cli(capsys, "runs", "prune", "--older-than", "1h", "--db", app.url)
    assert code == 0 and out.startswith("deleted 0 run(s)")
    assert app.store.get_run(done.id) is not None
    code, out, _ = cli(
        capsys, "runs", "prune", "--older-than", "1ms", "--status", "failed", "--db", app.url
    )
    assert code == 0 and out.startswith("deleted 0 run(s) that ended failed over 1ms ago")
    assert app.store.get_run(done.id) is not None
    code, out, _ = cli(capsys, "runs", "prune", "--older-than", "1ms", "--db", app.url)
    assert code == 0 and out.startswith("deleted 1 run(s) that ended succeeded, compensated")
    assert app.store.get_run(done.id) is None
    assert app.store.get_run(pending.id).status == "waiting"


def test_unknown_ids_bad_json_and_missing_databases_get_one_line_errors(shop, capsys, tmp_path):
    app, checkout = shop
    run = app.start(checkout, "o3")
    code, _, err = cli(capsys, "runs", "show", "nope", "--db", app.url)
    assert code == 2 and err.strip() == (
        "sagaway: error: no run with id 'nope' in this store (list runs with `runs list`)"
    )
    code, _, err = cli(capsys, "runs", "signal", run.id, "confirmed", "{oops", "--db", app.url)
    assert code == 2 and "the payload is not valid JSON" in err and "column 2" in err
    assert app.store.pending_signal(run.id, "confirmed") is None  # nothing was stored
    missing = tmp_path / "missing.db"
    code, _, err = cli(capsys, "runs", "list", "--db", str(missing))
    assert code == 2 and "no sagaway database at" in err
    assert not missing.exists()  # looking does not create a database


def test_worker_and_metrics_errors_name_the_fix(capsys):
    code, _, err = cli(capsys, "worker", "no_such_module:app")
    assert code == 2 and "cannot import 'no_such_module'" in err
    code, _, err = cli(capsys, "worker", "json")
    assert code == 2 and "is not MODULE:ATTR" in err
    code, _, err = cli(capsys, "worker", "json:dumps")
    assert code == 2 and "is not a sagaway App" in err
    code, _, err = cli(capsys, "metrics", "series", "runs_started", "--where", "status")
    assert code == 2 and "is not LABEL=VALUE" in err


def test_metrics_series_prints_minutes(shop, capsys):
    app, checkout = shop
    with app:
        run = app.start(checkout, "o4")
        app.signal(run.id, "confirmed")
        run.result(timeout=10)
    app.recorder.flush()
    code, out, _ = cli(capsys, "metrics", "series", "runs_finished", "--db", app.url, "--json")
    points = [p for p in json.loads(out) if p["value"] is not None]
    assert code == 0 and sum(p["value"] for p in points) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["runs", "list", "--limit", "0"],
            "argument --limit: 0 is out of range: give from 1 to 100000",
        ),
        (
            ["worker", "x:app", "--lease", "-3"],
            "--lease: -3 is out of range: give a number above 0, up to 86400",
        ),
        (["worker", "x:app", "--concurrency", "0"], "--concurrency: 0 is out of range"),
        (["metrics", "serve", "--port", "99999"], "--port: 99999 is out of range: give from 0 to"),
        (["metrics", "series", "retries", "--minutes", "-5"], "--minutes: -5 is out of range"),
        (["runs", "list", "--limit", "many"], "argument --limit: 'many' is not a whole number"),
    ],
)
def test_numbers_out_of_range_are_refused_by_name(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_percentiles_of_stored_metrics_are_refused_with_the_reason(capsys):
    code, _, err = cli(capsys, "metrics", "series", "step_seconds", "--stat", "p99")
    assert code == 2 and "--stat: statistic p99: engine metrics keep count" in err
    assert "percentiles cannot be computed" in err


def test_a_worker_module_missing_a_dependency_is_told_apart_from_a_missing_module(
    tmp_path, capsys, monkeypatch
):
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_here\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = cli(capsys, "worker", "needs_dep:app")
    assert code == 2
    assert "importing 'needs_dep' failed: No module named 'no_such_dependency_here'" in err
    assert "PYTHONPATH" not in err


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    import subprocess
    import sys

    from sagaway import App

    app = App(f"sqlite:///{tmp_path}/many.db", record_metrics=False)

    @app.saga()
    def idle(ctx, n):
        return n

    for n in range(1000):  # no worker: they stay pending; the listing is ~200 kB of JSON
        app.start(idle, n)
    app.close()
    cmd = [sys.executable, "-m", "sagaway.cli", "runs", "list", "--json", "--limit", "1000"]
    cmd += ["--db", f"{tmp_path}/many.db"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout.read(1) == b"["
        proc.stdout.close()  # the reader leaves, as `| head -c 1` does
        err = proc.stderr.read().decode()
        assert proc.wait(30) == 0
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_metrics_series_without_data_says_so(shop, capsys):
    app, _ = shop
    app.store  # noqa: B018 - the store exists, no metric was ever written
    code, out, _ = cli(
        capsys, "metrics", "series", "runs_finished", "--minutes", "5", "--db", app.url
    )
    assert code == 0 and out == "no data in the last 5 minutes\n"


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "list", "--limit", "99999999999999999999999"],
        ["metrics", "series", "retries", "--minutes", "99999999999999999999"],
        ["alarms", "replay", "--config", "a.yaml", "--extra-periods", "99999999999"],
        ["alarms", "watch", "--config", "a.yaml", "--grace", "1e300"],
        ["worker", "x:app", "--lease", "1e400"],
        ["worker", "x:app", "--concurrency", "10000000"],
        ["demo", "--customers", "1000000000"],
        ["demo", "--seed", "99999999999999999999"],
    ],
)
def test_huge_numbers_are_refused_with_the_range_not_a_traceback(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {args[-2]}: {args[-1]} is out of range: give " in err
    assert "Traceback" not in err


def test_every_numeric_option_states_its_range_in_its_help():
    import argparse

    from sagaway.cli import NumberType, build_parser

    def options(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from options(sub)
            else:
                yield parser.prog, action

    numeric = 0
    for prog, action in options(build_parser()):
        assert action.type not in (int, float), f"{prog} {action.option_strings}: unbounded"
        if isinstance(action.type, NumberType) and action.help != argparse.SUPPRESS:
            numeric += 1
            assert action.type.span in action.help, f"{prog} {action.option_strings}"
    assert numeric >= 9


def test_a_demo_directory_that_cannot_be_made_is_a_one_line_error(capsys):
    code, _, err = cli(capsys, "demo", "--dir", "/proc/nope")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("sagaway: error: --dir /proc/nope: cannot create it")


@pytest.fixture
def unwinding(make_app):
    """Three compensable steps around one without compensation; the last step fails."""
    app = make_app()

    @app.step
    def reserve(order):
        return "Grüße aus Köln"

    @reserve.compensation
    def release(order, result=None):
        pass

    @app.step
    def hold(order):
        return "held"

    @hold.compensation
    def unhold(order, result=None):
        pass

    @app.step
    def note(order):
        return "noted"

    @app.step
    def charge(order):
        return "charged"

    @charge.compensation
    def refund(order, result=None):
        pass

    @app.step
    def ship(order):
        raise Permanent("no parcel service")

    @app.saga()
    def checkout(ctx, order):
        reserve(order)
        hold(order)
        note(order)
        charge(order)
        ship(order)

    return app, checkout


def test_runs_show_lists_compensations_as_they_ran_with_times_and_unread_signals(unwinding, capsys):
    app, checkout = unwinding
    run = app.start(checkout, "o-ü")
    app.signal(run.id, "gift-note", {"text": "für dich"})  # no wait ever takes it
    with app:
        wait_status(run, "compensated")
    code, out, _ = cli(capsys, "runs", "show", run.id, "--db", app.url)
    assert code == 0
    rows = [line.split("│") for line in out.splitlines() if "│ compensation │" in line]
    assert [(r[1].strip(), r[4].strip()) for r in rows] == [
        ("3", "charge"),  # undone first: the journal keys it at 3, after 0 and 1
        ("1", "hold"),
        ("0", "reserve"),
    ]
    assert "started (UTC)" in out
    assert "signals received, not yet taken by a wait" in out and "gift-note" in out
    assert "für dich" in out and "Grüße aus Köln" in out and "\\u00fc" not in out
    code, out, _ = cli(capsys, "runs", "show", run.id, "--db", app.url, "--json")
    assert code == 0 and "Grüße aus Köln" in out and "\\u00" not in out
    shown = json.loads(out)
    undone = [s["name"] for s in shown["steps"] if s["phase"] == "compensation"]
    assert undone == ["charge", "hold", "reserve"]
    assert [(s["name"], s["payload"]) for s in shown["pending_signals"]] == [
        ("gift-note", {"text": "für dich"})
    ]


def test_runs_list_says_how_many_runs_it_left_out(make_app, capsys):
    app = make_app()

    @app.saga()
    def idle(ctx, n):
        return n

    for n in range(12):
        app.start(idle, n)  # no worker: they stay pending
    code, out, _ = cli(capsys, "runs", "list", "--limit", "5", "--db", app.url)
    assert code == 0 and "showing 5 of 12 (use --limit)" in out
    code, out, _ = cli(
        capsys, "runs", "list", "--limit", "5", "--status", "pending", "--db", app.url
    )
    assert "showing 5 of 12 (use --limit)" in out
    code, out, _ = cli(capsys, "runs", "list", "--limit", "12", "--db", app.url)
    assert "12 run(s)" in out and "showing" not in out


def test_app_runs_refuses_a_status_that_does_not_exist(app):
    with pytest.raises(ValueError, match=r"no run status 'bogus': use one of pending, running"):
        app.runs(status="bogus")
    assert app.runs(status="pending") == []


def test_a_negative_prune_age_is_refused_as_not_positive(shop, capsys):
    app, _ = shop
    app.store  # noqa: B018
    for args in (["--older-than", "-5d"], ["--older-than=-5d"]):
        code, _, err = cli(capsys, "runs", "prune", *args, "--db", app.url)
        assert code == 2 and err == (
            "sagaway: error: --older-than: -5d must be positive: the time since a run ended, "
            "e.g. 30d\n"
        )


def test_steering_verbs_print_json_when_asked(make_app, capsys):
    app = make_app()

    @app.step
    def pay(order):
        return "paid"

    @pay.compensation
    def unpay(order, result=None):
        raise Permanent("the refund API is gone")

    @app.step
    def ship(order):
        raise Permanent("no parcel")

    @app.saga()
    def waits(ctx, order):
        ctx.wait("go")

    @app.saga()
    def breaks(ctx, order):
        pay(order)
        ship(order)

    waiting, broken = app.start(waits, "o1"), app.start(breaks, "o2")
    with app:
        wait_status(broken, "failed")
    code, out, _ = cli(
        capsys, "runs", "signal", waiting.id, "other", '{"a": "ä"}', "--json", "--db", app.url
    )
    assert code == 0 and json.loads(out) == {
        "run_id": waiting.id, "signal": "other", "payload": {"a": "ä"}
    }  # fmt: skip
    code, out, _ = cli(capsys, "runs", "cancel", waiting.id, "--json", "--db", app.url)
    assert code == 0 and json.loads(out)["run_id"] == waiting.id
    assert json.loads(out)["cancel_requested"] is True
    code, out, _ = cli(capsys, "runs", "redrive", broken.id, "--json", "--db", app.url)
    assert code == 0 and json.loads(out) == {"run_id": broken.id, "status": broken.status}
    code, out, _ = cli(capsys, "runs", "prune", "--older-than", "1d", "--json", "--db", app.url)
    assert code == 0 and json.loads(out) == {
        "deleted": 0,
        "statuses": ["succeeded", "compensated", "cancelled"],
        "older_than": "1d",
        "older_than_seconds": 86400.0,
    }
