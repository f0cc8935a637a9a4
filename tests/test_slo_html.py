"""The HTML report opened in headless Chromium: it renders with no console error, every chart
has drawn lines, nothing is fetched from the network, and a screenshot is kept in artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sagaway.observe.slo import parse_slo_spec, report_from_alb, report_html
from tests.alb_lines import load_generator
from tests.conftest import require

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SPEC = """\
service: shop
defaults: {min_requests: 20}
slos:
  - name: checkout-availability
    objective: 99.5
    window: 7d
    indicator: {type: availability}
    filter: {path_prefix: /api/}
  - name: api-latency
    objective: 99
    window: 7d
    indicator: {type: latency, threshold: 0.25}
"""


@pytest.mark.browser
def test_html_report_renders_its_charts_in_chromium(tmp_path):
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} missing (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    gen = load_generator()
    gen.generate(
        str(tmp_path / "logs"),
        20_000,
        gen.parse_time("2024-05-01T00:00Z"),
        3.0,
        nodes=1,
        incidents=[
            gen.Incident.parse("at=2024-05-02T15:00Z,for=50m,errors=0.3,path=/api/"),
            gen.Incident.parse("at=2024-05-03T09:00Z,for=3h,latency=0.4"),
        ],
    )
    report = report_from_alb(
        parse_slo_spec(SPEC), [str(tmp_path / "logs")], quarantine_path=str(tmp_path / "q")
    )
    page_file = tmp_path / "report.html"
    page_file.write_text(report_html(report))
    artifacts = Path(__file__).resolve().parent.parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1200})
            problems, requests = [], []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.screenshot(path=str(artifacts / "slo-report-test.png"), full_page=True)
            charts = page.locator("svg")
            assert charts.count() == 4  # burn-down and burn rates for each SLO
            for i in range(charts.count()):
                box = charts.nth(i).bounding_box()
                assert box and box["width"] > 500 and box["height"] > 150
                lines = charts.nth(i).locator("polyline.series")
                assert lines.count() >= 1
                points = lines.first.get_attribute("points").split()
                assert len(points) > 10
                drawn = lines.first.evaluate("e => e.getTotalLength()")
                assert drawn > 100
            tiles = page.locator(".tile b").all_inner_texts()
            assert any(t.endswith("%") for t in tiles)
            assert page.locator("section").count() == 2
            assert page.locator("section table tr").count() == 2 * (2 + 5)  # burn rates, alerts
        finally:
            browser.close()
    assert problems == []
    assert requests == [page_file.as_uri()]  # nothing but the file itself
    assert (artifacts / "slo-report-test.png").stat().st_size > 10_000
