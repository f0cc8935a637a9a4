"""`sagaway slo rules`: Prometheus rules that promtool accepts and that fire when they should."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from sagaway.cli import main
from sagaway.observe.slo import parse_slo_spec, prometheus_rules
from tests.conftest import require

SPEC = """\
service: shop
prometheus: {selector: {job: shop}}
slos:
  - name: api-availability
    objective: 99.9
    window: 30d
    indicator: {type: availability, bad_status: ["5xx", 429]}
    filter: {host: shop.example.com, path_prefix: /api/, method: [GET, POST]}
  - name: api-latency
    objective: 99
    window: 30d
    indicator: {type: latency, threshold: 0.3}
"""

API = 'job="shop",host="shop.example.com",method="GET",path="/api/cart"'


def _promtool(*args, cwd):
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _expected(rules, slo, pairs):
    alerts = [
        r for g in rules["groups"] for r in g["rules"] if "alert" in r and r["labels"]["slo"] == slo
    ]
    return [
        {"exp_labels": a["labels"], "exp_annotations": a["annotations"]}
        for a in alerts
        if (a["labels"]["long_window"], a["labels"]["short_window"]) in pairs
    ]


def test_rules_pass_promtool_check_and_unit_tests(tmp_path):
    require(shutil.which("promtool") is not None, "promtool not installed (Debian: prometheus)")
    text = prometheus_rules(parse_slo_spec(SPEC, "slo.yaml"))
    (tmp_path / "rules.yml").write_text(text)
    checked = _promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = yaml.safe_load(text)
    every_pair = {("1h", "5m"), ("6h", "30m"), ("1d", "2h"), ("3d", "6h")}
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                # 750 good requests a minute; from minute 60 also 250 errors (503) a minute:
                # an error ratio of 250/1000 = 25%, a burn rate of 250 against 99.9%.
                "interval": "1m",
                "input_series": [
                    {"series": f'http_requests_total{{{API},code="200"}}', "values": "0+750x180"},
                    {
                        "series": f'http_requests_total{{{API},code="503"}}',
                        "values": "0+0x60 0+250x120",
                    },
                    # errors on another path are outside the SLO's filter
                    {
                        "series": 'http_requests_total{job="shop",host="shop.example.com",'
                        'method="GET",path="/health",code="500"}',
                        "values": "0+5000x180",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "50m", "alertname": "ErrorBudgetBurn", "exp_alerts": []},
                    {
                        "eval_time": "120m",
                        "alertname": "ErrorBudgetBurn",
                        "exp_alerts": _expected(rules, "api-availability", every_pair),
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": 'slo:sli_error:ratio_rate5m{slo="api-availability"}',
                        "eval_time": "120m",
                        "exp_samples": [
                            {
                                "labels": 'slo:sli_error:ratio_rate5m{service="shop",'
                                'slo="api-availability"}',
                                "value": 0.25,
                            }
                        ],
                    }
                ],
            },
            {
                # Too little traffic: 2 requests a minute, all slow. The latency SLO's burn rate
                # is 100, but fewer than 100 requests in 5 minutes: no page, only tickets.
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'http_request_duration_seconds_bucket{job="shop",le="0.3"}',
                        "values": "0+0x300",
                    },
                    {
                        "series": 'http_request_duration_seconds_count{job="shop"}',
                        "values": "0+2x300",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "290m",
                        "alertname": "ErrorBudgetBurn",
                        "exp_alerts": _expected(rules, "api-latency", {("1d", "2h"), ("3d", "6h")}),
                    }
                ],
            },
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = _promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_rules_command_writes_the_file(tmp_path, capsys):
    config = tmp_path / "slo.yaml"
    config.write_text(SPEC)
    assert main(["slo", "rules", "--config", str(config), "-o", str(tmp_path / "r.yml")]) == 0
    groups = yaml.safe_load((tmp_path / "r.yml").read_text())["groups"]
    assert [g["name"] for g in groups] == [
        "slo-shop-api-availability-recording",
        "slo-shop-api-availability-alerts",
        "slo-shop-api-latency-recording",
        "slo-shop-api-latency-alerts",
    ]
    ratio = next(r for r in groups[0]["rules"] if r.get("record") == "slo:sli_error:ratio_rate1h")
    assert 'code=~"5..|429"' in ratio["expr"] and 'path=~"(/api/).*"' in ratio["expr"]
    assert 'job="shop"' in ratio["expr"]
    latency = next(r for r in groups[2]["rules"] if r.get("record") == "slo:sli_error:ratio_rate1h")
    assert 'le=~"0\\\\.3"' in latency["expr"]
    config.write_text(SPEC.replace("{selector: {job: shop}}", "{selectr: {}}"))
    assert main(["slo", "rules", "--config", str(config)]) == 2
    assert "prometheus.selectr: unknown key" in capsys.readouterr().err
