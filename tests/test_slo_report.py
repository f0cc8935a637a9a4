"""`sagaway slo report` end to end: real log files, the JSON shape, the table, the errors."""

from __future__ import annotations

import json

import pytest

from sagaway.cli import main
from sagaway.observe.slo import parse_slo_spec, report_from_alb
from tests.alb_lines import line, load_generator

SPEC = """\
service: shop
defaults: {min_requests: 20}  # the test logs carry about 10 requests a minute
slos:
  - name: api-availability
    objective: 99.9
    window: 30d
    indicator: {type: availability, bad_status: ["5xx"]}
    filter: {host: shop.example.com, path_prefix: /api/, method: [GET, POST]}
  - name: api-latency
    objective: 99
    window: 30d
    indicator: {type: latency, threshold: 0.3}
"""

API = "GET https://shop.example.com:443/api/cart HTTP/1.1"


def test_which_requests_are_bad_for_each_indicator(tmp_path):
    t = "2024-05-01T12:00:00.000000Z"
    cases = [  # (line, bad for availability, bad for latency); all match the filter
        (line(t), False, False),
        (line(t, status=500, target_status="500"), True, False),  # the target failed, fast
        (line(t, status=503, target_status="-", times=("-1", "-1", "-1")), True, True),  # no target
        (line(t, status=502, target_status="-", times=("0.001", "0.500", "-1")), True, True),
        (
            line(
                t, status=404, target_status="-", times=("-1", "-1", "-1"), actions="fixed-response"
            ),
            False,
            False,
        ),  # the load balancer's own deliberate answer
        (
            line(t, status=301, target_status="-", times=("-1", "-1", "-1"), actions="redirect"),
            False,
            False,
        ),
        (line(t, status=460, target_status="-", times=("0.001", "-1", "-1")), False, False),
        (line(t, times=("0.001", "0.350", "0.000")), False, True),  # slow: 0.351 s > 0.3 s
        (line(t, times=("0.100", "0.100", "0.100")), False, False),  # exactly 0.3 s is good
        (line(t, status=429, target_status="429"), False, False),
    ]
    others = [  # outside the availability SLO's filter, still in the latency SLO
        line(t, status=500, target_status="500", request="DELETE " + API[4:]),
        line(
            t,
            status=500,
            target_status="500",
            request="GET https://static.example.com:443/api/x HTTP/1.1",
        ),
        line(
            t,
            status=500,
            target_status="500",
            request="GET https://shop.example.com:443/health HTTP/1.1",
        ),
    ]
    path = tmp_path / "a.log"
    path.write_text("\n".join([c[0] for c in cases] + others) + "\n")
    report = report_from_alb(
        parse_slo_spec(SPEC), [str(path)], quarantine_path=str(tmp_path / "q.jsonl")
    )
    availability, latency = report.results
    assert availability.total == len(cases)
    assert availability.bad == sum(c[1] for c in cases)
    assert latency.total == len(cases) + len(others)
    assert latency.bad == sum(c[2] for c in cases)
    assert report.source.malformed == 0 and not (tmp_path / "q.jsonl").exists()


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    gen = load_generator()
    root = tmp_path_factory.mktemp("alb")
    gen.generate(
        str(root / "logs"),
        30_000,
        gen.parse_time("2024-05-01T00:00Z"),
        2.0,
        nodes=2,
        incidents=[gen.Incident.parse("at=2024-05-02T20:00Z,for=40m,errors=0.25,path=/api/")],
    )
    bad = root / "logs" / "extra.log"
    bad.write_text(line("2024-05-02T23:00:00.000000Z") + "\nnot a log line\n")
    config = root / "slo.yaml"
    config.write_text(SPEC)
    return root


def test_report_json_has_the_documented_shape(logs, capsys, monkeypatch):
    monkeypatch.chdir(logs)
    code = main(["slo", "report", "--config", "slo.yaml", "--alb", "logs", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == {
        "files": data["source"]["files"],
        "lines": 30_002,
        "parsed": 30_001,
        "malformed": 1,
        "quarantine": "alb-quarantine.jsonl",
    }
    quarantined = json.loads((logs / "alb-quarantine.jsonl").read_text())
    assert quarantined["line"] == 2 and quarantined["text"] == "not a log line"
    # The newest entry is logged at 23:59:xx: the report is as of the end of that minute.
    assert data["at"] == "2024-05-03T00:00:00Z"
    first = data["slos"][0]
    assert {
        "name",
        "objective",
        "window",
        "total",
        "bad",
        "sli",
        "error_budget",
        "burn_rates",
        "alerts",
    } <= set(first)
    assert first["objective"] == 0.999 and first["window"] == "30d"
    assert set(first["error_budget"]) == {"allowed", "consumed", "remaining"}
    assert list(first["burn_rates"]) == ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "window"]
    assert [(a["severity"], a["long"], a["short"], a["threshold"]) for a in first["alerts"]] == [
        ("page", "1h", "5m", 14.4),
        ("page", "6h", "30m", 6.0),
        ("ticket", "1d", "2h", 3.0),
        ("ticket", "3d", "6h", 1.0),
    ]
    budget = first["error_budget"]
    assert budget["allowed"] == pytest.approx(first["total"] * 0.001, abs=1e-3)
    assert budget["consumed"] == pytest.approx(first["bad"] / budget["allowed"], rel=1e-3)
    assert first["burn_rates"]["window"] == budget["consumed"]
    assert first["sli"] == pytest.approx(1 - first["bad"] / first["total"], abs=1e-5)


def test_an_incident_makes_the_page_alert_fire_and_then_stop(logs, capsys):
    args = [
        "slo",
        "report",
        "--config",
        str(logs / "slo.yaml"),
        "--alb",
        str(logs / "logs"),
        "--quarantine",
        str(logs / "q.jsonl"),
        "--json",
    ]
    main([*args, "--at", "2024-05-02T20:30:00Z"])
    during = json.loads(capsys.readouterr().out)["slos"][0]
    assert during["burn_rates"]["5m"] > 14.4 and during["alerts"][0]["firing"]
    main([*args, "--at", "2024-05-02T22:00:00Z"])
    after = json.loads(capsys.readouterr().out)["slos"][0]
    assert after["burn_rates"]["1h"] < 1 and not after["alerts"][0]["firing"]
    assert after["burn_rates"]["1d"] > during["burn_rates"]["1d"] / 2


def test_table_and_html_outputs(logs, capsys, tmp_path):
    html = tmp_path / "report.html"
    code = main(
        [
            "slo",
            "report",
            "--config",
            str(logs / "slo.yaml"),
            "--alb",
            str(logs / "logs"),
            "--quarantine",
            str(tmp_path / "q.jsonl"),
            "--html",
            str(html),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "api-availability" in out and "api-latency" in out and "budget left" in out
    assert "1 malformed (set aside in" in out
    assert "logs cover only the last 2.0 days of the 30d window" in out
    text = html.read_text()
    assert text.count("<svg") == 4 and "http://" not in text.replace('xmlns="http://www.w3', "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "missing.yaml", "--alb", "."], "cannot read the SLO specification"),
        (["--config", "{config}", "--alb", "nowhere"], "nowhere: no such file or directory"),
        (["--config", "{config}", "--alb", "{logs}", "--at", "noon"], "--at 'noon' is not"),
        (
            ["--config", "{config}", "--alb", "{logs}", "--quarantine", "/nowhere/q.jsonl"],
            "--quarantine /nowhere/q.jsonl: the folder /nowhere does not exist",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message, logs, capsys):
    args = [a.format(config=logs / "slo.yaml", logs=logs / "logs") for a in args]
    assert main(["slo", "report", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_spec_error_names_the_line(tmp_path, capsys):
    config = tmp_path / "slo.yaml"
    config.write_text(SPEC.replace("objective: 99\n", "objective: 99.x\n"))
    assert main(["slo", "report", "--config", str(config), "--alb", str(tmp_path)]) == 2
    assert "line 10: slos[1].objective" in capsys.readouterr().err


def test_an_evaluation_time_outside_the_logs_is_pointed_out(logs, capsys, tmp_path):
    args = ["slo", "report", "--config", str(logs / "slo.yaml"), "--alb", str(logs / "logs")]
    args += ["--quarantine", str(tmp_path / "q.jsonl")]
    assert main([*args, "--at", "2030-01-01T00:00:00Z"]) == 0
    assert "--at 2030-01-01T00:00:00Z puts every SLO window outside the logs, which span" in (
        capsys.readouterr().err
    )
    assert main([*args, "--at", "2024-05-02T12:00:00Z"]) == 0
    assert capsys.readouterr().err == ""


def test_a_clean_run_removes_the_quarantine_file_an_earlier_run_left(tmp_path, capsys):
    config = tmp_path / "slo.yaml"
    config.write_text(SPEC)
    stale = tmp_path / "q.jsonl"
    stale.write_text('{"file": "old.log", "line": 1, "reason": "old", "text": "x"}\n')
    log = tmp_path / "good.log"
    log.write_text(line("2024-05-02T23:00:00.000000Z") + "\n")
    args = ["slo", "report", "--config", str(config), "--alb", str(log), "--quarantine", str(stale)]
    assert main(args) == 0
    assert "1 parsed, 0 malformed" in capsys.readouterr().out
    assert not stale.exists()
