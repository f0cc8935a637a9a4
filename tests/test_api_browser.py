"""The dashboard in headless Chromium (Debian's): sign in, find a failed run by its key, open
it, redrive it and see it end compensated; a viewer sees no action buttons; no page logs a
console error or loads anything from elsewhere. Screenshots are kept in artifacts/."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sagaway.api import create_app
from sagaway.api.access import cli_actor, issue_token
from sagaway.api.settings import ApiSettings
from tests.alb_lines import load_generator
from tests.apps.shop_api import declare_shop
from tests.conftest import require, wait_for, wait_status

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PAGES = ("/runs", "/stuck", "/breakers", "/messaging", "/slos", "/alarms", "/audit")


def slo_settings(folder: Path) -> ApiSettings:
    """A slo.yaml and a day of ALB logs with an outage, for the SLO page."""
    gen = load_generator()
    start = gen.parse_time("2024-05-01T00:00Z")
    outage = gen.Incident.parse("at=2024-05-01T15:00Z,for=50m,errors=0.3")
    gen.generate(str(folder / "logs"), 5_000, start, 3.0, nodes=1, incidents=[outage])
    spec = folder / "slo.yaml"
    spec.write_text(
        "service: shop\nslos:\n  - name: availability\n    objective: 99.5\n    window: 7d\n"
        "    indicator: {type: availability}\n"
    )
    return ApiSettings(slo_spec=str(spec), alb_logs=(str(folder / "logs"),))


@pytest.fixture
def served(make_app, tmp_path):
    """The shop with a worker, served by uvicorn on a free loopback port."""
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} missing (Debian package chromium)")
    import uvicorn

    state = {"refund_broken": True}
    app = make_app()
    sagas = declare_shop(app, state)
    app.launch()
    server_app = create_app(app, slo_settings(tmp_path))
    config = uvicorn.Config(server_app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    yield app, sagas, state, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str):
    """A phone- or laptop-sized page that records console errors and foreign requests."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.problems = []
    page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on(
        "request",
        lambda r: (
            page.problems.append(f"foreign request {r.url}")
            if not r.url.startswith(url) and not r.url.startswith("data:")
            else None
        ),
    )
    return page


def sign_in(page, url: str, token: str) -> None:
    page.goto(f"{url}/runs")
    assert page.url.endswith("/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/runs")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.mark.browser
def test_an_operator_finds_a_failed_run_by_key_redrives_it_and_sees_it_compensated(
    served, browser, store_url
):
    app, sagas, state, url = served
    backend = store_url.split(":", 1)[0]
    run = app.start(sagas["checkout"], "cart-42", key="cart-42")
    app.start(sagas["checkout"], "cart-7", key="cart-7")
    wait_status(run, "failed")
    token = issue_token(app.store, "operator", "alice", cli_actor())[1]
    page = open_page(browser, url)
    sign_in(page, url, token)
    page.fill("input[name=q]", "cart-42")
    page.click("form.filters button[type=submit]")
    page.click(f"a[href$='/runs/{run.id}']")
    assert "failed" in page.inner_text(".facts")
    assert page.locator("tr.comp").count() >= 1  # the compensation path, drawn apart
    shot(page, f"dashboard-run-failed-{backend}.png")
    page.click("text=Redrive…")
    preview = page.inner_text("main")
    assert "resumes the unwinding" in preview and "charge" in preview
    shot(page, f"dashboard-confirm-redrive-{backend}.png")
    state["refund_broken"] = False
    page.click("button:has-text('Redrive the run')")
    assert "redriven" in page.inner_text(".done")
    wait_status(run, "compensated")
    page.reload()  # the worker changed the run while the page was open
    assert "compensated" in page.inner_text(".facts")
    shot(page, f"dashboard-run-compensated-{backend}.png")
    for path in PAGES:
        page.goto(f"{url}{path}")
        assert page.locator("h1").count() == 1
        shot(page, f"dashboard{path.replace('/', '-')}-{backend}.png")
    waiting = app.start(sagas["confirm"], "c-1", key="confirm-1")
    wait_status(waiting, "waiting")
    for path in (
        f"/runs/{waiting.id}/confirm/cancel",
        f"/runs/{waiting.id}/confirm/signal",
        f"/runs/{run.id}/confirm/fork",
        f"/runs/{run.id}/confirm/fork?from_step=1",
        "/bulk/cancel?saga=confirm",
    ):
        page.goto(f"{url}{path}")
        assert page.locator("form[method=post] input[name=csrf]").count() >= 1, path
    assert "1 run(s) match" in page.inner_text("main")  # the bulk cancel's dry run
    page.goto(f"{url}/runs/{waiting.id}/confirm/cancel")
    assert "undo reserve" in page.inner_text("main")  # the compensation a cancel will run
    page.goto(f"{url}/slos")
    charts = page.frame_locator("iframe.report").locator("svg polyline.series")
    charts.first.wait_for()
    assert charts.count() >= 2  # the report's burn-down and burn-rate lines
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(f"{url}/runs")
    shot(page, f"dashboard-runs-phone-{backend}.png")
    assert page.problems == []
    assert app.store.audit()[0].action == "run.redrive"


@pytest.mark.browser
def test_a_viewer_sees_no_action_buttons(served, browser):
    app, sagas, _, url = served
    run = app.start(sagas["checkout"], "cart-9", key="cart-9")
    wait_status(run, "failed")
    token = issue_token(app.store, "viewer", "victor", cli_actor())[1]
    page = open_page(browser, url)
    sign_in(page, url, token)
    page.goto(f"{url}/runs/{run.id}")
    assert page.locator(".actions a, .actions button").count() == 0
    assert page.locator("text=Cancel all matching").count() == 0
    assert page.problems == []
    page.goto(f"{url}/runs/{run.id}/confirm/redrive")  # typed by hand: refused
    assert "may not do this" in page.inner_text("main")
    shot(page, "dashboard-viewer.png")
