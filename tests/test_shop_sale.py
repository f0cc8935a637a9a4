"""`sagaway shop sale --quick` as a user runs it: real providers, shop and worker processes,
a worker SIGKILLed, faults at the payment provider; the invariants read from report.json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_the_quick_sale_keeps_every_invariant_and_reports_it(tmp_path):
    out = tmp_path / "sale"
    done = subprocess.run(
        [sys.executable, "-m", "sagaway.cli", "shop", "sale", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    broken = [i for i in report["invariants"] if not i["ok"]]
    assert report["ok"] is True and broken == []
    values = {i["name"]: i["value"] for i in report["invariants"]}
    assert values["duplicate orders (one purchase key, several orders)"] == 0
    assert values["duplicate orders (one checkout, several orders)"] == 0
    assert values["double charges (an order charged more than once)"] == 0
    assert values["stock not conserved (initial != available + reserved + sold)"] == 0
    assert values["placed orders without exactly one mail"] == 0
    assert report["orders"]["by_status"].get("placed", 0) >= 1
    # What the invariants were tested against did happen.
    customers = report["customers"]
    assert customers["double_clicks"] >= 1 and customers["resubmissions"] >= 1
    assert customers["replayed_responses"] >= 1
    events = [e["what"] for e in report["events"]]
    assert "worker-1 SIGKILLed" in events and "worker-1 restarted" in events
    assert {"payment quota", "payment gray", "payment outage"} <= {
        f"{k} {v}" for p in report["phases"] for k, v in p["faults"].items()
    }
    # Every figure has a source: the access log was read whole, the page says the verdict.
    log = report["requests"]["access_log"]
    assert log["parsed"] == log["lines"] > report["requests"]["total"] / 2 and log["malformed"] == 0
    assert "Every invariant holds." in (out / "report.html").read_text()
    assert "every invariant holds" in done.stdout
