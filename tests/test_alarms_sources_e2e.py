"""End to end: `sagaway alarms` on a store of real runs and on generated ALB access logs, with
notifications received by a real webhook server on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time

from sagaway.engine.metrics import labels
from sagaway.store import open_store
from tests.servers import WebhookServer
from tests.test_alarms_sources import SLO_SPEC, generate, run_checkouts

NOTIFIER = """
notifiers:
  - {{name: ops, type: webhook, url: "{url}/hook"}}
delivery: {{attempts: 3, base: 0.05, cap: 0.1}}
"""

ENGINE_ALARM = """
store: ${{ALARMS_TEST_DB}}
alarms:
  - name: checkouts-compensating
    engine_metric: runs_finished
    where: {{saga: checkout, status: compensated}}
    statistic: count
    period: 60
    threshold: 3
    evaluation_periods: 2
    datapoints_to_alarm: 1
    evaluation_range: 2     # look back 2 minutes only: recovers 2 minutes after the last one
    treat_missing: notBreaching
    notify: [ops]
"""


def alarms(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "sagaway.cli", "alarms", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def test_replay_of_a_store_of_real_runs_notifies_alarm_then_ok_once_each(app, tmp_path):
    run_checkouts(app, declined=6, paid=4)
    config = tmp_path / "alarms.yaml"
    with WebhookServer() as server:
        config.write_text(ENGINE_ALARM.format() + NOTIFIER.format(url=server.url))
        result = alarms(
            "replay",
            "--config",
            str(config),
            "--notify",
            "--json",
            "--extra-periods",
            "5",
            env={"ALARMS_TEST_DB": app.url},  # no --logs: every alarm reads the store
        )
        assert result.returncode == 0, result.stderr
        received = server.delivered()
        keys = [r["headers"].get("Idempotency-Key") for r in server.requests]
    report = json.loads(result.stdout)
    assert [n["kind"] for n in received] == ["ALARM", "OK"]
    alarm, recovery = received
    assert alarm["alarm"] == recovery["alarm"] == "checkouts-compensating"
    assert alarm["details"]["metric"] == "runs_finished{saga=checkout,status=compensated}"
    assert sum(p or 0 for p in alarm["details"]["datapoints"]) >= 3
    assert recovery["duration_seconds"] > 0 and "recovered" in recovery["summary"]
    assert keys == [alarm["id"], recovery["id"]]  # one delivery each, deduplicable by id
    assert report["store"].split()[0] in ("SQLite", "PostgreSQL")
    assert report["delivery"]["failed"] == []
    assert "the last evaluations end after now" in " ".join(report["notes"])


def test_watch_catches_up_from_the_store_notifies_and_stops_cleanly(tmp_path):
    # A watcher restarted with --from evaluates the periods it missed. The past it catches up
    # on is written as every sagaway process writes it: per-minute buckets in the store.
    url = f"sqlite:///{tmp_path}/shop.db"
    store = open_store(url)
    minute = int(time.time() // 60)
    compensated = labels(saga="checkout", status="compensated")
    succeeded = labels(saga="checkout", status="succeeded")
    rows = [("runs_finished", succeeded, minute - m, 20, 40.0, 1.0, 3.0) for m in range(1, 9)]
    rows += [("runs_finished", compensated, minute - m, 5, 10.0, 1.0, 3.0) for m in (6, 5, 4)]
    store.add_metrics(rows)
    store.close()
    config = tmp_path / "alarms.yaml"
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((minute - 8) * 60))
    with WebhookServer() as server:
        config.write_text(ENGINE_ALARM.format() + NOTIFIER.format(url=server.url))
        watcher = subprocess.Popen(
            [
                *(sys.executable, "-m", "sagaway.cli", "alarms", "watch"),
                *("--config", str(config), "--db", url, "--from", start),
                *("--poll", "0.05", "--json"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.time() + 20
            while len(server.delivered()) < 2 and time.time() < deadline:
                time.sleep(0.05)
        finally:
            watcher.send_signal(signal.SIGTERM)
            out, err = watcher.communicate(timeout=30)
        received = server.delivered()
    assert watcher.returncode == 0, err
    assert [(n["kind"], n["timestamp"]) for n in received] == [
        ("ALARM", time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime((minute - 5) * 60))),
        ("OK", time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime((minute - 1) * 60))),
    ]
    assert received[1]["duration_seconds"] == 240
    assert "engine metrics in SQLite" in err and "stopped: " in err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["kind"] for e in events if e["event"] == "notification"] == ["ALARM", "OK"]


CHECKOUT_5XX = """
filters:
  - name: checkout-5xx
    pattern: '{{ $.status >= 500 && $.path = "/api/checkout*" }}'
    default: 0
"""
COMPOSITE = """
  - name: checkout-5xx
    metric: checkout-5xx
    threshold: 5
    treat_missing: notBreaching
slos:
  config: slo.yaml
  alb: [alb/]
  quarantine: {quarantine}
composites:
  - name: checkout-down
    rule: >-
      ALARM("slo:api-availability:page")
      OR (ALARM(checkout-5xx) AND ALARM(checkouts-compensating))
    notify: [ops]
"""


def test_a_composite_with_an_slo_child_pages_during_the_incident_of_a_generated_alb_log(
    app, tmp_path
):
    run_checkouts(app, declined=1, paid=1)  # the store is real, but holds nothing for 2024
    generate(tmp_path / "alb")  # 12:00-15:00 with 20% of /api/ failing from 13:00 to 13:30
    (tmp_path / "slo.yaml").write_text(SLO_SPEC)
    log = tmp_path / "app.log"
    log.write_text(
        "\n".join(
            json.dumps({"time": f"2024-05-01T13:{m:02d}:10Z", "path": "/api/checkout", "status": s})
            for m in range(60)
            for s in (200, 503)
        )
        + "\n"
    )
    config = tmp_path / "alarms.yaml"
    with WebhookServer() as server:
        config.write_text(
            CHECKOUT_5XX.format()
            + ENGINE_ALARM.format().replace("notify: [ops]", "")
            + COMPOSITE.format(quarantine=tmp_path / "q.jsonl")
            + NOTIFIER.format(url=server.url)
        )
        check = alarms("check", "--config", str(config), "--db", app.url)
        assert check.returncode == 0, check.stderr
        result = alarms(
            "replay",
            *("--config", str(config), "--db", app.url, "--logs", str(log)),
            *("--from", "2024-05-01T12:00Z", "--to", "2024-05-01T15:00Z"),
            "--notify",
            "--json",
        )
        assert result.returncode == 0, result.stderr
        received = server.delivered()
    assert "slo alert  slo:api-availability:page: SLO api-availability (99.9% over 30d)" in (
        check.stdout
    )
    assert [(n["alarm"], n["kind"]) for n in received] == [
        ("checkout-down", "ALARM"),
        ("checkout-down", "OK"),
    ]
    alarm, recovery = received
    assert "2024-05-01T13:00:00Z" < alarm["timestamp"] <= "2024-05-01T13:05:00Z"
    assert "2024-05-01T13:30:00Z" < recovery["timestamp"] <= "2024-05-01T14:00:00Z"
    assert alarm["details"]["children"] == {
        "slo:api-availability:page": "ALARM",
        "checkout-5xx": "OK",
        "checkouts-compensating": "OK",
    }
    report = json.loads(result.stdout)
    assert report["range"] == {"from": "2024-05-01T12:01:00Z", "to": "2024-05-01T15:00:00Z"}
    assert report["alb"] == {"files": 36, "lines": 12000, "parsed": 12000, "malformed": 0}
    page = [t for t in report["timeline"] if t["alarm"] == "slo:api-availability:page"]
    assert [t["state"] for t in page][-2:] == ["ALARM", "OK"]


def test_check_points_at_the_line_and_says_what_engine_metrics_allow(tmp_path):
    config = tmp_path / "alarms.yaml"
    config.write_text(
        "alarms:\n  - name: compensating\n    engine_metric: compensations\n"
        "    threshold: 1\n    period: 90\n"
    )
    result = alarms("check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"sagaway: error: {config}:5: alarm 'compensating': period 90s: engine metrics are "
        "kept in one-minute buckets"
    )
    assert "multiple of 60 seconds" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_with_the_store_warns_about_labels_nothing_stored_has(app, tmp_path):
    run_checkouts(app, declined=1, paid=0)
    config = tmp_path / "alarms.yaml"
    config.write_text(
        "alarms:\n  - {name: c, engine_metric: runs_finished, where: {saga: chekout}, "
        "threshold: 1}\n"
    )
    result = alarms("check", "--config", str(config), "--db", app.url)
    assert result.returncode == 0, result.stderr
    assert (
        "warning: alarm 'c' reads runs_finished{saga=chekout}: no stored runs_finished has "
        "saga='chekout'; stored: checkout"
    ) in result.stdout
    missing = alarms("replay", "--config", str(config), "--db", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "the store cannot be opened" in missing.stderr
    logs = tmp_path / "logs.yaml"
    logs.write_text(
        "filters: [{name: f, pattern: ERROR}]\nalarms: [{name: e, metric: f, threshold: 1}]"
    )
    need = alarms("replay", "--config", str(logs))
    assert need.returncode == 2 and "alarms e read log filters: give the log files" in need.stderr
