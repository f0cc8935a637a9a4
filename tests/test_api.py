"""The JSON API: runs found, read and mended over HTTP, roles, CSRF, the audit log and
problem details, on both backends."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient

from sagaway.api import create_app
from sagaway.api.access import cli_actor, issue_token, revoke_token
from tests.apps.shop_api import declare_shop
from tests.conftest import wait_for, wait_status


@pytest.fixture
def shop(make_app):
    """An App with the shop declared and a worker, its ASGI client, and a token per role."""
    state = {"refund_broken": True}
    app = make_app()
    sagas = declare_shop(app, state)
    app.launch()
    client = TestClient(create_app(app))
    tokens = {
        role: issue_token(app.store, role, f"{role}-token", cli_actor())[1]
        for role in ("viewer", "operator", "admin")
    }
    return app, sagas, state, client, tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def failed_run(app, sagas, key: str):
    run = app.start(sagas["checkout"], key, key=key)
    wait_status(run, "failed")
    return run


def test_a_failed_run_is_found_by_key_redriven_and_ends_compensated(shop):
    app, sagas, state, client, tokens = shop
    run = failed_run(app, sagas, "cart-42")
    found = client.get("/api/v1/runs", params={"q": "cart-4"}, headers=auth(tokens["viewer"]))
    assert found.status_code == 200
    assert [r["id"] for r in found.json()["items"]] == [run.id]
    detail = client.get(f"/api/v1/runs/{run.id}", headers=auth(tokens["viewer"])).json()
    assert detail["status"] == "failed"
    assert detail["actions"]["redrive"]["resumes"] == "compensation"
    assert [c["step"] for c in detail["actions"]["redrive"]["compensations"]] == [
        "charge",
        "reserve",
    ]
    assert any(e["kind"] == "escalation" for e in detail["events"])
    state["refund_broken"] = False
    redriven = client.post(f"/api/v1/runs/{run.id}/redrive", headers=auth(tokens["operator"]))
    assert redriven.status_code == 200, redriven.text
    assert wait_status(run, "compensated") == "compensated"
    entry = client.get("/api/v1/audit", headers=auth(tokens["viewer"])).json()["items"][0]
    assert (entry["action"], entry["run_id"], entry["outcome"]) == ("run.redrive", run.id, "ok")
    assert entry["actor"].startswith("operator-token (")


def test_runs_list_filters_by_status_and_saga_and_pages_with_a_cursor(shop):
    app, sagas, _, client, tokens = shop
    runs = [app.start(sagas["confirm"], f"c{i}", key=f"confirm-{i}") for i in range(5)]
    for run in runs:
        wait_status(run, "waiting")
    seen, cursor = [], None
    while True:
        params = {"status": "waiting", "saga": "confirm", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/runs", params=params, headers=auth(tokens["viewer"])).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r.id for r in reversed(runs)]  # newest first, each once
    by_key = client.get("/api/v1/runs", params={"key": "confirm-3"}, headers=auth(tokens["viewer"]))
    assert [r["id"] for r in by_key.json()["items"]] == [runs[3].id]
    assert by_key.json()["items"][0]["waiting"] == {
        "kind": "signal",
        "signal": "confirmed",
        "deadline": pytest.approx(runs[3].refresh().wait_deadline),
    }
    by_id = client.get("/api/v1/runs", params={"q": runs[1].id}, headers=auth(tokens["viewer"]))
    assert [r["id"] for r in by_id.json()["items"]] == [runs[1].id]
    none = client.get("/api/v1/runs", params={"status": "failed"}, headers=auth(tokens["viewer"]))
    assert none.json() == {"items": [], "next_cursor": None}


def test_signal_cancel_and_fork_over_the_api_are_audited(shop):
    app, sagas, _, client, tokens = shop
    waiting = app.start(sagas["confirm"], "s1")
    wait_status(waiting, "waiting")
    sent = client.post(
        f"/api/v1/runs/{waiting.id}/signals/confirmed",
        json={"ok": True},
        headers=auth(tokens["operator"]),
    )
    assert sent.status_code == 200, sent.text
    assert waiting.result(timeout=10) == {"order": "s1", "answer": {"ok": True}}
    fork = client.post(
        f"/api/v1/runs/{waiting.id}/fork", json={"from_step": 1}, headers=auth(tokens["operator"])
    )
    assert fork.status_code == 201, fork.text
    fork_id = fork.json()["run_id"]
    assert app.get(fork_id).forked_from == waiting.id
    wait_status(app.get(fork_id), "waiting")  # reserve reused; the wait runs anew
    cancelled = client.post(f"/api/v1/runs/{fork_id}/cancel", headers=auth(tokens["operator"]))
    assert cancelled.status_code == 200
    wait_status(app.get(fork_id), "cancelled")
    again = client.post(f"/api/v1/runs/{fork_id}/cancel", headers=auth(tokens["operator"]))
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["status"] == 409 and "already ended" in again.json()["detail"]
    actions = [
        (e["action"], e["outcome"][:7])
        for e in client.get("/api/v1/audit", headers=auth(tokens["viewer"])).json()["items"]
    ]
    assert actions[:4] == [
        ("run.cancel", "refused"),
        ("run.cancel", "ok"),
        ("run.fork", "ok"),
        ("run.signal", "ok"),
    ]


def test_bulk_redrive_counts_in_a_dry_run_then_redrives_only_failed_runs(shop):
    app, sagas, state, client, tokens = shop
    failed = [failed_run(app, sagas, f"bulk-{i}") for i in range(3)]
    waiting = app.start(sagas["confirm"], "w")
    wait_status(waiting, "waiting")
    body = {"q": "bulk-", "dry_run": True}
    dry = client.post("/api/v1/bulk/redrive", json=body, headers=auth(tokens["operator"])).json()
    assert dry["matched"] == 3 and dry["done"] == []
    assert all(r.status == "failed" for r in failed)
    state["refund_broken"] = False
    done = client.post(
        "/api/v1/bulk/redrive", json={**body, "dry_run": False}, headers=auth(tokens["operator"])
    ).json()
    assert sorted(done["done"]) == sorted(r.id for r in failed)
    for run in failed:
        wait_status(run, "compensated")
    assert waiting.status == "waiting"


def test_problem_details_for_unknown_runs_bad_parameters_and_cursors(shop):
    _, _, _, client, tokens = shop
    missing = client.get("/api/v1/runs/nope", headers=auth(tokens["viewer"]))
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert set(missing.json()) >= {"type", "title", "status", "detail"}
    for params in ({"status": "lost"}, {"limit": 0}, {"cursor": "garbage"}):
        bad = client.get("/api/v1/runs", params=params, headers=auth(tokens["viewer"]))
        assert bad.status_code == 422, params
        assert bad.json()["status"] == 422
    route = client.get("/api/v1/nowhere", headers=auth(tokens["viewer"]))
    assert route.status_code == 404 and route.json()["status"] == 404


def test_dead_letters_are_listed_and_redriven_over_the_api(shop):
    app, _, _, client, tokens = shop
    from sagaway import Permanent

    state = {"broken": True}

    @app.consumer("mail", group="mailer", retry=None)
    def send(msg):
        if state["broken"]:
            raise Permanent("smtp refused")
        state.setdefault("sent", []).append(msg.payload)

    app.shutdown()
    app.launch()
    app.publish("mail", {"to": "a@example.com"}, key="m1")
    wait_for(lambda: app.dead_letters(group="mailer"), what="a dead letter")
    listed = client.get("/api/v1/dead-letters", headers=auth(tokens["viewer"])).json()["items"]
    assert [(d["group"], d["key"], d["error"]["message"]) for d in listed] == [
        ("mailer", "m1", "smtp refused")
    ]
    groups = client.get("/api/v1/groups", headers=auth(tokens["viewer"])).json()["items"]
    assert groups[0]["group"] == "mailer" and groups[0]["dead"] == 1
    state["broken"] = False
    refused = client.post(
        "/api/v1/dead-letters/redrive", json={"group": "mailer"}, headers=auth(tokens["viewer"])
    )
    assert refused.status_code == 403
    moved = client.post(
        "/api/v1/dead-letters/redrive", json={"group": "mailer"}, headers=auth(tokens["operator"])
    )
    assert moved.json() == {"group": "mailer", "moved": 1}
    wait_for(lambda: state.get("sent"), what="the redriven message to be handled")
    assert app.store.audit()[0].action == "dead_letters.redrive"


def test_metrics_are_prometheus_text_and_need_a_token(shop):
    app, sagas, _, client, tokens = shop
    failed_run(app, sagas, "m1")
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers=auth(tokens["viewer"])).text
    assert 'sagaway_runs{status="failed"} 1.0' in text


def test_tokens_are_managed_by_admins_and_a_revoked_token_stops_at_once(shop):
    app, _, _, client, tokens = shop
    created = client.post(
        "/api/v1/tokens", json={"role": "viewer", "name": "dash"}, headers=auth(tokens["admin"])
    )
    assert created.status_code == 201
    new = created.json()
    assert client.get("/api/v1/runs", headers=auth(new["token"])).status_code == 200
    listed = client.get("/api/v1/tokens", headers=auth(tokens["admin"])).json()
    assert "token" not in listed[-1] and listed[-1]["name"] == "dash"
    revoked = client.delete(f"/api/v1/tokens/{new['id']}", headers=auth(tokens["admin"]))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert client.get("/api/v1/runs", headers=auth(new["token"])).status_code == 401
    actions = [e.action for e in app.store.audit()]
    assert actions[:2] == ["token.revoke", "token.create"]


def test_a_revoked_token_ends_its_browser_sessions_at_once(shop):
    app, _, _, client, _ = shop
    record, token = issue_token(app.store, "viewer", "browser", cli_actor())
    page = client.get("/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    signed = client.post("/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"].endswith("/runs")
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/api/v1/runs").status_code == 200  # the session cookie
    revoke_token(app.store, record.id, cli_actor())
    assert client.get("/api/v1/runs").status_code == 401
    assert client.get("/runs", follow_redirects=False).headers["location"].endswith("/login")


def test_a_session_change_without_the_csrf_token_is_refused(shop):
    app, sagas, _, client, tokens = shop
    waiting = app.start(sagas["confirm"], "csrf")
    wait_status(waiting, "waiting")
    page = client.get("/login")
    nonce = page.text.split('name="csrf" value="')[1].split('"')[0]
    client.post("/login", data={"token": tokens["operator"], "csrf": nonce})
    refused = client.post(f"/api/v1/runs/{waiting.id}/cancel")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    form = client.post(f"/runs/{waiting.id}/cancel", data={"csrf": "wrong"})
    assert form.status_code == 403
    assert waiting.status == "waiting"
    run_page = client.get(f"/runs/{waiting.id}/confirm/cancel").text
    csrf = run_page.split('name="csrf" value="')[1].split('"')[0]
    done = client.post(f"/runs/{waiting.id}/cancel", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    wait_status(waiting, "cancelled")


def test_a_sign_in_with_an_unknown_token_fails_and_secrets_never_reach_the_log(shop, caplog):
    _, _, _, client, tokens = shop
    caplog.set_level(logging.DEBUG)
    page = client.get("/login")
    nonce = page.text.split('name="csrf" value="')[1].split('"')[0]
    wrong = client.post(
        "/login", data={"token": "sgw_wrong", "csrf": nonce}, follow_redirects=False
    )
    assert wrong.headers["location"].endswith("/login?failed=1")
    client.get("/api/v1/runs", headers=auth(tokens["admin"]))
    client.get("/api/v1/runs", headers=auth("sgw_unknown"))
    assert tokens["admin"] not in caplog.text and "sgw_wrong" not in caplog.text


def test_a_run_changed_by_a_worker_shows_its_new_state_on_reload(shop):
    app, sagas, _, client, tokens = shop
    run = app.start(sagas["confirm"], "reload")
    wait_status(run, "waiting")
    first = client.get(f"/api/v1/runs/{run.id}", headers=auth(tokens["viewer"])).json()
    assert first["status"] == "waiting"
    app.signal(run.id, "confirmed", "yes")
    wait_for(lambda: run.status == "succeeded", what="the worker to finish the run")
    again = client.get(f"/api/v1/runs/{run.id}", headers=auth(tokens["viewer"])).json()
    assert again["status"] == "succeeded" and again["result"]["answer"] == "yes"


def test_alarms_of_an_alarms_yaml_are_evaluated_and_shown_with_their_incidents(make_app, tmp_path):
    from sagaway.api.settings import ApiSettings

    app = make_app()
    token = issue_token(app.store, "viewer", "v", cli_actor())[1]
    config = tmp_path / "alarms.yaml"
    config.write_text(
        "alarms:\n"
        "  - name: backlog\n"
        "    engine_metric: queue_age_seconds\n"
        "    statistic: max\n"
        "    threshold: 30\n"
        "    period: 60\n"
        "    treat_missing: breaching\n"
    )
    server = create_app(app, ApiSettings(alarms=str(config)))
    views = server.state.sagaway.alarms
    try:
        with views._lock:  # evaluate five minutes at once instead of waiting for them
            views.monitor.start_at(time.time() - 300)
            views.monitor.evaluate_until(time.time())
        body = TestClient(server).get("/api/v1/alarms", headers=auth(token)).json()
    finally:
        views.close()
    [alarm] = body["items"]
    assert (alarm["name"], alarm["state"]) == ("backlog", "ALARM")
    assert alarm["transitions"][0]["state"] == "ALARM"
    assert alarm["incidents"] and alarm["incidents"][0]["kind"]


def test_without_alarms_yaml_the_alarm_view_says_how_to_get_one(shop):
    _, _, _, client, tokens = shop
    body = client.get("/api/v1/alarms", headers=auth(tokens["viewer"])).json()
    assert body["items"] == [] and "--alarms alarms.yaml" in body["note"]


def test_every_response_says_how_long_the_server_took(shop):
    _, _, _, client, tokens = shop
    response = client.get("/api/v1/runs", headers=auth(tokens["viewer"]))
    assert float(response.headers["server-timing"].split("dur=")[1]) >= 0
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_slos_of_a_slo_yaml_and_alb_logs_are_reported_with_their_charts(make_app, tmp_path):
    from sagaway.api.settings import ApiSettings
    from tests.alb_lines import load_generator

    gen = load_generator()
    gen.generate(str(tmp_path / "logs"), 5_000, gen.parse_time("2024-05-01T00:00Z"), 3.0, nodes=1)
    spec = tmp_path / "slo.yaml"
    spec.write_text(
        "service: shop\nslos:\n  - name: availability\n    objective: 99.5\n    window: 7d\n"
        "    indicator: {type: availability}\n"
    )
    app = make_app()
    token = issue_token(app.store, "viewer", "v", cli_actor())[1]
    settings = ApiSettings(slo_spec=str(spec), alb_logs=(str(tmp_path / "logs"),))
    client = TestClient(create_app(app, settings))
    body = client.get("/api/v1/slos", headers=auth(token)).json()
    assert [s["name"] for s in body["slos"]] == ["availability"] and body["note"] is None
    assert set(body["slos"][0]["burn_rates"]) >= {"1h", "6h"}
    report = client.get("/slos/report", headers=auth(token))
    assert report.status_code == 200 and report.text.count("<svg") == 2  # burn-down, burn rate


@pytest.mark.slow
def test_the_api_serves_runs_that_a_worker_in_another_process_executes(store_url, tmp_path):
    from tests.apps.crashable import build
    from tests.processes import WorkerProcess

    log = tmp_path / "bodies.log"
    app = build(store_url, str(log))  # declarations only: this process runs no worker
    token = issue_token(app.store, "operator", "ops", cli_actor())[1]
    client = TestClient(create_app(app))
    (tmp_path / "bodies.log.fail-charge").touch()
    worker = WorkerProcess(store_url, log)
    try:
        run = app.start("checkout", "o-1", key="order-o-1")

        def status_of(run_id: str) -> str:
            body = client.get(f"/api/v1/runs/{run_id}", headers=auth(token)).json()
            return body["status"]

        wait_for(lambda: status_of(run.id) == "compensated", what="the worker to compensate")
        (tmp_path / "bodies.log.fail-charge").unlink()
        fork = client.post(f"/api/v1/runs/{run.id}/fork", json={"from_step": 1},
                           headers=auth(token))  # fmt: skip
        assert fork.status_code == 201, fork.text
        fork_id = fork.json()["run_id"]
        wait_for(lambda: status_of(fork_id) == "succeeded", what="the worker to run the fork")
    finally:
        worker.stop()
        app.close()
    bodies = [line.split()[0] for line in log.read_text().splitlines()]
    # The fork reused reserve's result (the origin had released it: a real fork of this run
    # would start at 0) and ran charge and ship in the worker process.
    assert bodies == ["reserve", "charge", "release", "charge", "ship"]


def test_mounted_under_a_path_in_another_asgi_app_links_and_errors_follow_the_prefix(make_app):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = make_app()
    token = issue_token(app.store, "viewer", "v", cli_actor())[1]
    outer = Starlette(routes=[Mount("/ops", app=create_app(app))])
    client = TestClient(outer)
    refused = client.get("/ops/api/v1/runs")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert client.get("/ops/runs", follow_redirects=False).headers["location"] == "/ops/login"
    login = client.get("/ops/login")
    assert 'action="/ops/login"' in login.text and 'href="/ops/static/app.css"' in login.text
    assert "Path=/ops" in login.headers["set-cookie"]
    nonce = login.text.split('name="csrf" value="')[1].split('"')[0]
    signed = client.post("/ops/login", data={"token": token, "csrf": nonce}, follow_redirects=False)
    assert signed.headers["location"] == "/ops/runs"
    page = client.get("/ops/runs")
    assert page.status_code == 200 and 'href="/ops/stuck"' in page.text
    assert client.get("/ops/static/app.css").status_code == 200


def test_a_run_parked_by_an_open_breaker_shows_in_stuck_work_and_breakers(make_app):
    from sagaway.resilience import CircuitBreaker

    app = make_app()
    breaker = CircuitBreaker("payments", shared=app.shared_breakers, open_for=600)

    @app.step(breaker=breaker)
    def pay(order: str) -> str:
        return order

    @app.saga()
    def buy(ctx, order: str) -> str:
        return pay(order)

    token = issue_token(app.store, "viewer", "v", cli_actor())[1]
    client = TestClient(create_app(app))
    breaker.force_open()
    with app:
        run = app.start(buy, "b1")
        wait_status(run, "waiting")
        stuck = client.get("/api/v1/stuck", headers=auth(token)).json()
        shared = client.get("/api/v1/breakers", headers=auth(token)).json()
        page = client.get(f"/api/v1/runs/{run.id}", headers=auth(token)).json()
    assert [r["id"] for r in stuck["parked"]] == [run.id]
    assert stuck["parked_per_step"] == {"pay": 1}
    [payments] = shared["breakers"]
    assert (payments["name"], payments["steps"]) == ("payments", ["pay"])
    assert payments["state"] != "closed"
    assert page["waiting"]["kind"] == "parked" and page["waiting"]["step"] == "pay"
    assert "parked" in [e["kind"] for e in page["events"]]
