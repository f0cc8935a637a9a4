"""The sale's parts on their own: the customers' retries and double clicks against a small
HTTP server, the invariants from provider figures, the SLO alert timeline from an access log,
the report page, and the errors of the command line. `test_shop_sale.py` runs the whole sale."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sagaway.cli import main
from sagaway.shop.sale import Phase, SaleOptions, SalePlan, SaleRun
from sagaway.shop.sale._audit import Audit, invariants
from sagaway.shop.sale._cluster import Child, ClusterError
from sagaway.shop.sale._gray import GrayState, GrayWatch
from sagaway.shop.sale._load import ROUTES, Customers, Recorder
from sagaway.shop.sale._report import build_report, write_report
from sagaway.shop.sale._slo import SALE_SLOS, evaluate_sale_slos
from sagaway.shop.sale._wire import WireClient


class ShopStub:
    """Answers the checkout routes with fixed bodies: the first `refuse` requests get 503 with
    `Retry-After: 1`; a purchase takes `purchase_seconds`. Records every request."""

    def __init__(self, refuse: int = 0, purchase_seconds: float = 0.0) -> None:
        self.requests: list[tuple[float, str, str, str | None]] = []
        self.refuse = refuse
        self.purchase_seconds = purchase_seconds
        self.purchasing = 0
        self.most_purchasing = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                key = self.headers.get("Idempotency-Key")
                with stub.lock:
                    stub.requests.append((time.monotonic(), self.command, self.path, key))
                    refused = stub.refuse > 0
                    stub.refuse -= 1
                if refused:
                    self._send(503, {"title": "overloaded"}, {"Retry-After": "1"})
                    return
                if self.path == "/catalog":
                    self._send(200, {"items": [{"sku": "mug", "in_stock": 5}]})
                elif self.path.endswith("/purchase"):
                    with stub.lock:
                        stub.purchasing += 1
                        stub.most_purchasing = max(stub.most_purchasing, stub.purchasing)
                    time.sleep(stub.purchase_seconds)
                    with stub.lock:
                        stub.purchasing -= 1
                    self._send(202, {"order": f"order-{key}", "id": "c1", "status": "buying"})
                else:
                    self._send(201 if self.path == "/checkouts" else 200, {"id": "c1"})

            def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ShopStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _walk(url: str, phase: Phase, recorder: Recorder) -> None:
    client = WireClient(url, timeout=10.0)  # the client a sale's customers use
    await Customers(client, recorder, random.Random(1)).walk(phase)
    await client.aclose()


def test_a_refused_request_is_sent_again_after_retry_after_with_the_same_key():
    recorder = Recorder()
    with ShopStub(refuse=2) as shop:
        asyncio.run(_walk(shop.url, Phase("p", 1, 1, "", double_click_share=0), recorder))
    catalog = [r for r in shop.requests if r[2] == "/catalog"]
    created = [r for r in shop.requests if r[2] == "/checkouts"]
    assert len(catalog) == 3 and len(created) == 1
    assert catalog[1][0] - catalog[0][0] >= 0.95 and catalog[2][0] - catalog[1][0] >= 0.95
    assert [s.status for s in recorder.samples if s.route == ROUTES[0]] == [503, 503, 200]
    assert recorder.completed == 1
    [key] = recorder.orders_by_key
    assert recorder.orders_by_checkout == {"c1": {f"order-{key}"}}


def test_a_double_click_sends_the_purchase_twice_at_once_with_one_key():
    recorder = Recorder()
    with ShopStub(purchase_seconds=0.3) as shop:
        asyncio.run(_walk(shop.url, Phase("p", 1, 1, "", double_click_share=1.0), recorder))
    purchases = [r for r in shop.requests if r[2].endswith("/purchase")]
    assert len(purchases) == 2 and purchases[0][3] == purchases[1][3] is not None
    assert shop.most_purchasing == 2  # both in the shop at the same time
    writes = [r[3] for r in shop.requests if r[1] != "GET" and not r[2].endswith("/purchase")]
    assert len(set(writes)) == len(writes) == 3  # each other write has its own key
    assert recorder.double_clicks == 1 and list(recorder.orders_by_key.values()) == [
        {f"order-{purchases[0][3]}"}
    ]


def _audit(charged: dict, sent: dict, stock: dict, statuses: dict) -> list:
    recorder = Recorder()
    for i, order in enumerate(statuses):
        recorder.order(f"key-{i}", f"c{i}", order)
        recorder.units_by_checkout[f"c{i}"] = 1
    audit = Audit(
        orders={o: {"id": o, "checkout": f"c{i}", "status": s} for i, (o, s) in
                enumerate(statuses.items())},
        checkouts={f"c{i}": [o] for i, o in enumerate(statuses)},
        provider_stats={
            "payment": {"charged_per_order": charged},
            "mail": {"sent_per_order": sent},
            "inventory": stock,
        },
    )  # fmt: skip
    return invariants(audit, recorder)


def test_invariants_hold_for_figures_that_agree():
    stock = {"initial": {"mug": 5}, "available": {"mug": 3}, "reserved": {}, "sold": {"mug": 2}}
    checks = _audit({"o1": 1, "o2": 1, "o3": 0}, {"o1": 1, "o2": 1}, stock,
                    {"o1": "placed", "o2": "placed", "o3": "compensated"})  # fmt: skip
    assert [c.name for c in checks if not c.ok] == []


def test_invariants_name_a_double_charge_lost_stock_a_second_mail_and_an_open_order():
    stock = {"initial": {"mug": 5}, "available": {"mug": 2}, "reserved": {}, "sold": {"mug": 2}}
    checks = _audit({"o1": 2, "o2": 1, "o3": 1}, {"o1": 1, "o2": 2}, stock,
                    {"o1": "placed", "o2": "placed", "o3": "pending"})  # fmt: skip
    broken = {c.name: c.value for c in checks if not c.ok}
    assert broken == {
        "double charges (an order charged more than once)": 1,
        "placed orders not charged exactly once": 1,
        "stock not conserved (initial != available + reserved + sold)": 1,
        "placed orders without exactly one mail": 1,
        "orders not ended after the drain": 1,
    }
    assert all(c.source for c in checks)


def test_an_order_whose_answer_never_reached_its_customer_is_audited_like_the_others():
    # The load ended (or the customer gave up) while a purchase was in flight: the shop
    # placed the order, mailed and charged it, but no customer was given its id. The shop
    # lists it under the checkout, and the audit counts it like any other order.
    stock = {"initial": {"mug": 5}, "available": {"mug": 3}, "reserved": {}, "sold": {"mug": 2}}

    def checks(status: str) -> dict:
        recorder = Recorder()
        recorder.order("key-1", "c1", "o1")
        recorder.units_by_checkout.update({"c1": 1, "c2": 1})
        audit = Audit(
            orders={"o1": {"id": "o1", "checkout": "c1", "status": "placed"},
                    "o2": {"id": "o2", "checkout": "c2", "status": status}},
            checkouts={"c1": ["o1"], "c2": ["o2"]},
            provider_stats={"payment": {"charged_per_order": {"o1": 1, "o2": 1}},
                            "mail": {"sent_per_order": {"o1": 1, "o2": 1}},
                            "inventory": stock},
        )  # fmt: skip
        return {c.name: c.value for c in invariants(audit, recorder) if not c.ok}

    assert checks("placed") == {}
    assert checks("pending")["orders not ended after the drain"] == 1


def _alb_line(at: float, path: str, status: int, seconds: float = 0.01) -> str:
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        f"http {when} app/shop/1 127.0.0.1:5000 127.0.0.1:8000 0.000 {seconds:.3f} 0.000 "
        f'{status} {status} 10 20 "POST http://127.0.0.1:8000{path} HTTP/1.1" "sale" - - - '
        f'"Root=1-0-0" "-" "-" 0 {when} "forward" "-" "-" "-" "-" "-" "-"\n'
    )


def _access_log(path: Path, start: float) -> None:
    """Four minutes of checkout traffic, 100 requests each; half of the second minute's are
    shed with 503."""
    with path.open("w") as log:
        for minute in range(4):
            for i in range(100):
                status = 503 if minute == 1 and i % 2 else 201
                log.write(_alb_line(start + minute * 60 + 1 + i * 0.5, "/checkouts", status))


def test_the_page_alert_fires_in_the_minute_of_503s_and_clears_after_it(tmp_path):
    start = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a whole minute
    _access_log(tmp_path / "access.log", start)
    outcome = evaluate_sale_slos(tmp_path / "access.log", tmp_path)
    pages = [
        (c.at - start, c.change)
        for c in outcome.changes
        if c.slo == "checkout-availability" and c.severity == "page"
    ]
    assert pages == [(120.0, "fired"), (180.0, "cleared")]
    assert (tmp_path / "slo.html").exists() and "checkout-latency" in (
        tmp_path / "slo.yaml"
    ).read_text()
    availability = outcome.to_json()["report"]["slos"][0]
    assert availability["total"] == 400 and availability["bad"] == 50


def test_the_documented_slo_specification_is_the_one_the_sale_writes():
    page = (Path(__file__).parent.parent / "docs" / "sale.md").read_text()
    assert f"```yaml\n{SALE_SLOS}```" in page


def test_the_report_page_is_self_contained_and_says_where_each_figure_comes_from(tmp_path):
    start = 1_767_225_600.0
    _access_log(tmp_path / "access.log", start)
    slo = evaluate_sale_slos(tmp_path / "access.log", tmp_path)
    phase = Phase("baseline", 1, 1, "normal traffic")
    plan = SalePlan("tiny", (phase,), 1)
    run = SaleRun(SaleOptions(plan, "sqlite:///x.db", tmp_path), Recorder())
    run.recorder.record(ROUTES[0], 200, 0.01)
    run.recorder.record(ROUTES[1], 503, 0.002)
    run.phase_spans.append((phase, 0.0, 1.0, 1))
    run.phase_spans.append((Phase("outage", 1, 1, "later"), 70.0, 71.0, 1))
    # The alarm's minute ending 2 s in holds the baseline only, not the outage a minute on.
    run.gray = GrayWatch("sqlite:///x.db", "http://127.0.0.1:1")
    run.gray.states.append(GrayState(run.started_at + 2.0, "OK", "both say it fails"))
    run.event("phase baseline: normal traffic")
    stock = {"initial": {"mug": 1}, "available": {"mug": 0}, "reserved": {}, "sold": {"mug": 0}}
    run.audit = Audit(provider_stats={"inventory": stock})
    run.audit.invariants = invariants(run.audit, run.recorder)
    report = build_report(run, slo, {"parked_and_resumed": 0}, tmp_path / "access.log")
    write_report(report, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)
    assert "An invariant is BROKEN." in page and "stock not conserved" in page
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["ok"] is False and data["requests"]["shed_503"] == 1
    assert set(data["sources"]) >= {"requests", "latency", "orders", "providers", "slo"}
    assert data["slo"]["alert_changes"][0]["change"] == "fired"
    assert data["gray_failure_alarm"]["evaluations"][0]["phases"] == ["baseline"]
    assert "phases in the minute" in page


def test_a_process_that_does_not_start_is_named_with_its_output(tmp_path):
    code = "print('no port for me', flush=True); raise SystemExit(3)"
    child = Child("payment", [sys.executable, "-c", code], tmp_path / "p.log", {}, "listening")
    with pytest.raises(
        ClusterError, match=r"(?s)payment did not start \(it exited with status 3\).*no port for me"
    ):
        child.start()


def test_the_sale_command_refuses_a_database_it_cannot_use(tmp_path, capsys):
    code = main(["shop", "sale", "--out", str(tmp_path / "out"), "--db", "mysql://shop"])
    assert code == 2
    assert "--db mysql://shop: give sqlite:///PATH or postgresql://" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_the_sale_command_refuses_zero_workers(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["shop", "sale", "--out", str(tmp_path / "out"), "--workers", "0"])
    assert "argument --workers: 0 is out of range" in capsys.readouterr().err
