"""`sagaway tokens`, `sagaway runs fork` and `sagaway serve`'s refusals, as a user runs them."""

from __future__ import annotations

import json

import pytest

from sagaway.api.access import digest
from sagaway.cli import main
from sagaway.cli.serve import is_loopback
from tests.apps.shop_api import declare_shop
from tests.conftest import wait_status


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_tokens_create_prints_the_token_alone_on_its_last_line_and_stores_only_its_hash(
    app, capsys
):
    assert app.store.tokens() == []  # the store exists, with sagaway's schema
    code, out, _ = cli(capsys, "tokens", "create", "--db", app.url, "--role", "operator",
                       "--name", "alice")  # fmt: skip
    assert code == 0
    token = out.splitlines()[-1]
    assert token.startswith("sgw_") and " " not in token and len(token) > 40
    record = app.store.token_by_hash(digest(token))
    assert (record.name, record.role) == ("alice", "operator")
    assert all(token not in repr(t) for t in app.store.tokens())
    code, out, _ = cli(capsys, "tokens", "list", "--db", app.url, "--json")
    listed = json.loads(out)
    assert [(t["name"], t["role"], t["revoked_at"]) for t in listed] == [
        ("alice", "operator", None)
    ]
    assert token not in out
    code, out, _ = cli(capsys, "tokens", "revoke", listed[0]["id"], "--db", app.url, "--json")
    assert code == 0 and json.loads(out)["revoked_at"] is not None
    assert app.store.token_by_hash(digest(token)) is None
    actions = [(e.action, e.actor.startswith("cli:")) for e in app.store.audit()]
    assert actions == [("token.revoke", True), ("token.create", True)]


def test_tokens_refuse_an_unknown_token_id_and_a_database_without_sagaway(app, capsys, tmp_path):
    assert app.store.tokens() == []  # creates the store
    code, _, err = cli(capsys, "tokens", "revoke", "nope", "--db", app.url)
    assert code == 2 and "no token with id 'nope'" in err
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    code, _, err = cli(capsys, "tokens", "create", "--db", str(other), "--role", "viewer")
    assert code == 2 and err.count("\n") == 1 and "sagaway" in err


def test_runs_fork_starts_a_linked_run_from_the_cli(make_app, capsys):
    app = make_app()
    sagas = declare_shop(app, {"refund_broken": False})
    with app:
        run = app.start(sagas["checkout"], "f1")
        wait_status(run, "compensated")
    code, out, _ = cli(capsys, "runs", "fork", run.id, "--from-step", "2", "--db", app.url,
                       "--json")  # fmt: skip
    assert code == 0
    made = json.loads(out)
    assert made["forked_from"] == run.id and made["from_step"] == 2
    assert app.get(made["run_id"]).forked_from == run.id
    code, _, err = cli(capsys, "runs", "fork", run.id, "--from-step", "9", "--db", app.url)
    assert code == 2 and "outside run" in err


def test_serve_refuses_an_address_other_than_loopback_while_no_token_exists(app, capsys):
    assert app.store.tokens() == []  # creates the store
    code, _, err = cli(capsys, "serve", "--db", app.url, "--host", "0.0.0.0", "--port", "0")
    assert code == 2
    assert "not loopback, while no token exists" in err and "tokens create" in err


def test_serve_wants_slo_and_alb_logs_together(app, capsys):
    code, _, err = cli(capsys, "serve", "--db", app.url, "--slo", "slo.yaml")
    assert code == 2 and "--slo and --alb-logs go together" in err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("192.0.2.10", False), ("::", False)],
)  # fmt: skip
def test_loopback_addresses_are_told_apart(host, loopback):
    assert is_loopback(host) is loopback
