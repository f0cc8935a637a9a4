"""End to end: the `sagaway alarms` command, real log files, a real webhook receiver."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import WebhookServer

T0 = 1_714_564_800  # 2024-05-01T12:00:00Z, a minute boundary


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def write_incident_log(path: Path) -> None:
    """12 minutes of checkout traffic; minutes 3 to 8 carry 10 errors each."""
    lines = []
    for minute in range(12):
        for i in range(20):
            ts = T0 + minute * 60 + i * 3
            status = 503 if (3 <= minute <= 8 and i % 2 == 0) else 200
            lines.append(
                json.dumps({"timestamp": iso(ts), "path": "/api/checkout", "status": status})
            )
    lines.insert(5, "garbage without a time")
    lines.insert(50, '{"status": 503, "path": "/api/checkout"}')  # JSON, but undated
    path.write_text("\n".join(lines) + "\n")


CONFIG = """
period: 60
filters:
  - name: checkout-5xx
    pattern: '{{ $.status >= 500 && $.path = "/api/*" }}'
    default: 0
alarms:
  - name: checkout-errors
    metric: checkout-5xx
    statistic: sum
    threshold: 5
    evaluation_periods: 2
    datapoints_to_alarm: 2
    treat_missing: notBreaching
    renotify_every: 2
    notify: [ops]
composites:
  - name: page-oncall
    rule: ALARM(checkout-errors) AND NOT ALARM("deploy in progress")
sources: ["deploy in progress"]
notifiers:
  - name: ops
    type: webhook
    url: "{url}/hooks/${{OPS_HOOK_TOKEN}}"
delivery:
  attempts: 3
  base: 0.05
  cap: 0.1
"""


def run_cli(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "sagaway.cli", "alarms", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def test_replayed_incident_notifies_alarm_two_reminders_and_recovery_exactly_once(tmp_path):
    log = tmp_path / "app.log"
    write_incident_log(log)
    config = tmp_path / "alarms.yaml"
    with WebhookServer() as server:
        config.write_text(CONFIG.format(url=server.url))
        result = run_cli(
            "replay",
            "--config",
            str(config),
            "--logs",
            str(log),
            "--json",
            "--notify",
            "--rejects",
            str(tmp_path / "rejects.jsonl"),
            env={"OPS_HOOK_TOKEN": "tok-123-secret"},
        )
        assert result.returncode == 0, result.stderr
        received = server.delivered()
        paths = {r["path"] for r in server.requests}
    report = json.loads(result.stdout)

    # The webhook got the incident: ALARM, two reminders, OK with the duration; once each.
    assert [(n["alarm"], n["kind"]) for n in received] == [
        ("checkout-errors", "ALARM"),
        ("checkout-errors", "RENOTIFY"),
        ("checkout-errors", "RENOTIFY"),
        ("checkout-errors", "OK"),
    ]
    assert len({n["id"] for n in received}) == 4
    alarm, first, second, recovery = received
    assert alarm["timestamp"] == "2024-05-01T12:05:00Z"  # minutes 3 and 4 both breached
    assert [first["duration_seconds"], second["duration_seconds"]] == [120, 240]
    assert [first["renotify_count"], second["renotify_count"]] == [1, 2]
    assert recovery["timestamp"] == "2024-05-01T12:10:00Z"
    assert recovery["duration_seconds"] == 300 and "lasted 5m" in recovery["summary"]
    assert paths == {"/hooks/tok-123-secret"}

    # The printed timeline agrees, including the composite that had no notifier.
    timeline = [(t["alarm"], t["state"], t["timestamp"]) for t in report["timeline"]]
    assert ("checkout-errors", "ALARM", "2024-05-01T12:05:00Z") in timeline
    assert ("page-oncall", "ALARM", "2024-05-01T12:05:00Z") in timeline
    assert ("checkout-errors", "OK", "2024-05-01T12:10:00Z") in timeline
    assert report["delivery"] == {"sent": {"ops": 4}, "failed": []}
    # Undated lines are counted and set aside, never silently dropped.
    assert report["lines"]["undated"] == 2 and report["lines"]["dated"] == 240
    rejected = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert next(r["line"] for r in rejected) == "garbage without a time"
    assert report["filters"]["checkout-5xx"]["matched"] == 60
    assert "tok-123-secret" not in result.stderr


def test_replay_without_notify_only_prints(tmp_path):
    log = tmp_path / "app.log"
    write_incident_log(log)
    config = tmp_path / "alarms.yaml"
    with WebhookServer() as server:
        config.write_text(CONFIG.format(url=server.url))
        result = run_cli(
            "replay", "--config", str(config), "--logs", str(log), env={"OPS_HOOK_TOKEN": "x"}
        )
        assert server.requests == []
    assert result.returncode == 0, result.stderr
    assert "checkout-errors: OK -> ALARM" in result.stdout
    assert "[OK] checkout-errors recovered" in result.stdout


def test_check_reports_config_errors_on_one_line_with_exit_2(tmp_path):
    config = tmp_path / "alarms.yaml"
    config.write_text(
        "filters:\n  - name: f\n    pattern: '{ $.status >= }'\n"
        "alarms:\n  - name: a\n    metric: f\n    threshold: 1\n"
    )
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith(f"sagaway: error: {config}:2: filter 'f': pattern error")
    assert "column 15" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    config.write_text("period: 60\n")  # valid, but it would watch nothing
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 2 and "defines no alarm: add an `alarms:` list" in result.stderr
    config.write_bytes(b"period: 60\n\xff")
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 2 and "not UTF-8 text (byte 11)" in result.stderr


def test_check_summarises_a_valid_config_without_secrets(tmp_path):
    config = tmp_path / "alarms.yaml"
    config.write_text(CONFIG.format(url="https://hooks.example.com"))
    result = run_cli("check", "--config", str(config), env={"OPS_HOOK_TOKEN": "tok-abc-987"})
    assert result.returncode == 0, result.stderr
    assert "composite  page-oncall" in result.stdout
    assert "webhook 'ops' (https://hooks.example.com/…)" in result.stdout
    assert "tok-abc-987" not in result.stdout


@pytest.mark.slow
def test_watch_follows_a_live_log_through_rotation_and_stops_cleanly_on_sigterm(tmp_path):
    log = tmp_path / "live.log"
    log.write_text("")
    config = tmp_path / "alarms.yaml"
    with WebhookServer() as server:
        config.write_text(
            f"""
period: 1
filters:
  - name: errors
    pattern: ERROR
    default: 0
alarms:
  - name: errors
    metric: errors
    threshold: 3
    treat_missing: notBreaching
    renotify_every: 2
    notify: [ops]
notifiers:
  - name: ops
    type: webhook
    url: {server.url}/hook
"""
        )
        watcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sagaway.cli",
                "alarms",
                "watch",
                "--config",
                str(config),
                "--logs",
                str(log),
                "--grace",
                "0.2",
                "--poll",
                "0.05",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.0)

            def write(text, seconds):
                end = time.time() + seconds
                while time.time() < end:
                    with log.open("a") as handle:
                        handle.write(f"{iso(time.time())} {text}\n")
                    time.sleep(0.1)

            write("ERROR payment failed", 2.0)
            log.rename(tmp_path / "live.log.1")  # rotation: the file is replaced
            log.write_text("")
            write("ERROR payment failed", 2.0)
            write("INFO all good", 2.5)
        finally:
            watcher.send_signal(signal.SIGTERM)
            out, err = watcher.communicate(timeout=30)
        kinds = [n["kind"] for n in server.delivered()]
    assert watcher.returncode == 0, err
    assert kinds[0] == "ALARM" and kinds[-1] == "OK", kinds
    assert kinds.count("ALARM") == 1 and kinds.count("OK") == 1
    assert "RENOTIFY" in kinds
    summary = json.loads(err.split("stopped: ", 1)[1])
    assert summary["rotations"] >= 1 and summary["lines"]["undated"] == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert any(e["event"] == "notification" and e["kind"] == "OK" for e in events)


def test_replay_reports_malformed_json_as_a_lower_bound(tmp_path):
    # Two truncated lines; only the one that could match is parsed, so only it is counted.
    log = tmp_path / "app.log"
    log.write_text(
        f'{{"timestamp": "{iso(T0)}", "path": "/api/checkout", "status": 503,\n'
        f'{{"timestamp": "{iso(T0 + 1)}", "path": "/api/checkout", "status": 200,\n'
        f'{{"timestamp": "{iso(T0 + 2)}", "path": "/api/checkout", "status": 502}}\n'
    )
    config = tmp_path / "alarms.yaml"
    config.write_text(CONFIG.format(url="http://127.0.0.1:9/unused"))
    env = {"OPS_HOOK_TOKEN": "x"}
    text = run_cli("replay", "--config", str(config), "--logs", str(log), env=env)
    assert text.returncode == 0, text.stderr
    assert "checkout-5xx: 1 matched, 0 value errors, at least 1 malformed JSON" in text.stdout
    report = run_cli("replay", "--config", str(config), "--logs", str(log), "--json", env=env)
    stats = json.loads(report.stdout)["filters"]["checkout-5xx"]
    assert stats == {"matched": 1, "value_errors": 0, "malformed_json_at_least": 1}
    # The malformed line that was parsed is also set aside, with the filter that saw it.
    rejects = tmp_path / "rejects.jsonl"
    run_cli(
        "replay", "--config", str(config), "--logs", str(log), "--rejects", str(rejects), env=env
    )
    aside = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert aside == [
        {
            "reason": "not valid JSON (filter 'checkout-5xx' parsed it)",
            "line": log.read_text().splitlines()[0],
        }
    ]
