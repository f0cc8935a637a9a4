"""Alarms on the engine's own metrics, and SLO burn-rate alerts as composite children."""

import os
import sqlite3
import time
from datetime import UTC, datetime

import pytest

from sagaway import Permanent, SagaCompensated
from sagaway.errors import ConfigurationError
from sagaway.observe import AlarmState
from sagaway.observe.alarms import EngineMetricReader, EngineMetricRef, Monitor, parse_config
from sagaway.observe.slo import SloAlerts, parse_slo_spec
from tests.alb_lines import load_generator

OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA


def run_checkouts(app, declined: int, paid: int) -> None:
    """Real runs: `declined` checkouts compensate (the charge is refused), `paid` succeed."""

    @app.step
    def reserve(n):
        return n

    @reserve.compensation
    def release(n, result=None):
        pass

    @app.step
    def charge(n):
        if n < declined:
            raise Permanent("card declined")
        return n

    @app.saga()
    def checkout(ctx, n):
        reserve(n)
        return charge(n)

    with app:
        runs = [app.start(checkout, n) for n in range(declined + paid)]
        for run in runs:
            try:
                run.result(timeout=20)
            except SagaCompensated:
                pass
    app.recorder.flush()


# --- engine metrics ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "where", "fragment"),
    [
        ("runs_finish", {}, "unknown engine metric 'runs_finish': did you mean 'runs_finished'?"),
        ("runs_finished", {"state": "failed"}, "no label 'state': did you mean 'status'?"),
        ("runs_finished", {"status": "compensating"}, "never has status='compensating'"),
        ("queue_depth", {"saga": "checkout"}, "queue_depth has no labels"),
        ("step_seconds", {"outcome": "timeout"}, "(one of ok, error)"),
    ],
)
def test_engine_metric_references_are_checked_against_the_metrics_labels(metric, where, fragment):
    with pytest.raises(ValueError) as caught:
        EngineMetricRef(metric, where)
    assert fragment in str(caught.value)


def test_an_engine_alarm_reads_real_runs_from_the_store_and_goes_alarm_then_ok(app):
    run_checkouts(app, declined=6, paid=4)
    config = parse_config(
        """
alarms:
  - name: checkouts-compensating
    engine_metric: runs_finished
    where: {saga: checkout, status: compensated}
    threshold: 3            # 6 compensated runs: at least 3 in one minute, even across a boundary
    treat_missing: notBreaching
  - name: checkouts-slow
    engine_metric: runs_finished
    where: {saga: checkout}
    statistic: max
    threshold: 60           # no run took a minute
    treat_missing: notBreaching
"""
    )
    monitor = Monitor(config, engine=EngineMetricReader(app.store))
    now = time.time()
    monitor.start_at(now - 180)
    monitor.evaluate_until(now + 300)  # the minutes after the runs have no data: notBreaching
    states = [(t.alarm, t.state) for t in monitor.transitions]
    assert states[:1] == [("checkouts-compensating", OK)]
    assert ("checkouts-compensating", ALARM) in states
    assert states.index(("checkouts-compensating", ALARM)) < len(states) - 1
    assert monitor.states["checkouts-compensating"] == OK
    assert monitor.states["checkouts-slow"] == OK
    alarm = next(t for t in monitor.transitions if t.state == ALARM)
    assert max(p or 0 for p in alarm.datapoints) >= 3
    kinds = [(n.alarm, n.kind) for n in monitor.notifications]
    assert kinds == [("checkouts-compensating", "ALARM"), ("checkouts-compensating", "OK")]
    assert monitor.notifications[0].details["metric"] == (
        "runs_finished{saga=checkout,status=compensated}"
    )
    # The datapoints are the store's: every compensated run is counted once.
    counted = EngineMetricReader(app.store).series(
        EngineMetricRef("runs_finished", {"status": "compensated"}), 60, now - 600
    )
    assert sum(bucket.count for _, bucket in counted) == 6


def test_longer_periods_fold_the_minute_buckets(app):
    run_checkouts(app, declined=3, paid=0)
    ref = EngineMetricRef("compensations", {"saga": "checkout"})
    reader = EngineMetricReader(app.store)
    minutes = reader.series(ref, 60, 0)
    five = reader.series(ref, 300, 0)
    assert sum(b.count for _, b in five) == sum(b.count for _, b in minutes) == 3
    assert all(start % 300 == 0 for start, _ in five)


def break_metrics_table(store):
    """Drop the metrics table behind the store's back, as a broken database would."""
    if hasattr(store, "path"):
        with sqlite3.connect(store.path) as conn:
            conn.execute("DROP TABLE sagaway_metrics")
    else:
        store._write(lambda cur: cur.execute("DROP TABLE sagaway_metrics"))


def test_a_store_that_cannot_be_read_makes_the_alarm_insufficient_data_not_ok(app, tmp_path):
    run_checkouts(app, declined=1, paid=0)
    config = parse_config(
        "alarms: [{name: comp, engine_metric: compensations, threshold: 1,"
        " treat_missing: notBreaching}]"
    )
    monitor = Monitor(config, engine=EngineMetricReader(app.store))
    now = time.time()
    monitor.start_at(now - 120)
    monitor.evaluate_until(now - 60)
    assert monitor.states["comp"] == OK
    break_metrics_table(app.store)  # the table goes away under the reader
    monitor.evaluate_until(now + 60)
    last = monitor.transitions[-1]
    assert last.state == INSUFFICIENT and "cannot read compensations from the store" in last.reason


def test_unmatched_labels_are_reported_with_what_is_stored(app):
    run_checkouts(app, declined=1, paid=1)
    reader = EngineMetricReader(app.store)
    assert reader.unmatched(EngineMetricRef("runs_finished", {"saga": "checkout"})) is None
    why = reader.unmatched(EngineMetricRef("runs_finished", {"saga": "chekout"}))
    assert why == "no stored runs_finished has saga='chekout'; stored: checkout"
    assert reader.unmatched(EngineMetricRef("escalations")) == "the store holds no escalations yet"


def test_a_monitor_with_engine_alarms_needs_a_reader():
    config = parse_config("alarms: [{name: comp, engine_metric: compensations, threshold: 1}]")
    with pytest.raises(ValueError, match="pass engine=EngineMetricReader"):
        Monitor(config)


# --- SLO alerts ----------------------------------------------------------------------------

SLO_SPEC = """
service: shop
slos:
  - name: api-availability
    objective: 99.9
    window: 30d
    indicator: {type: availability, bad_status: ["5xx"]}
    filter: {path_prefix: /api/}
"""
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(hhmm: str) -> float:
    return datetime.fromisoformat(f"2024-05-01T{hhmm}:00+00:00").timestamp()


def generate(out, hours=3.0, lines=12_000, start=START, incident=True):
    gen = load_generator()
    incidents = [gen.Incident.parse("at=2024-05-01T13:00Z,for=30m,errors=0.2,path=/api/")]
    return gen.generate(
        str(out),
        lines,
        start,
        hours / 24,
        nodes=1,
        compress=False,
        incidents=incidents if incident else [],
    )


def test_slo_alert_sources_follow_the_incident_and_say_when_they_cannot_tell(tmp_path):
    generate(tmp_path / "alb")
    alerts = SloAlerts(
        parse_slo_spec(SLO_SPEC),
        [str(tmp_path / "alb")],
        quarantine=str(tmp_path / "q.jsonl"),
    )
    page = alerts.sources["slo:api-availability:page"]
    assert sorted(alerts.sources) == ["slo:api-availability:page", "slo:api-availability:ticket"]
    state, why = page.assess(at("13:10"))
    assert (state, why) == (INSUFFICIENT, "cannot say: no access log has been read yet")
    assert alerts.read() == 36
    assert page.state_at(at("12:30")) == OK
    state, why = page.assess(at("13:10"))
    assert state == ALARM and "over 1h" in why and "(>= 14.4)" in why
    assert page.state_at(at("14:30")) == OK
    # Before the logs start and long after they end, the windows hold too few requests.
    state, why = page.assess(at("12:01"))
    assert state == INSUFFICIENT and "fewer than min_requests (100)" in why
    assert page.state_at(at("18:00")) == INSUFFICIENT
    # An evaluation never looks past its time: at 13:00 the incident has not begun.
    assert page.state_at(at("13:00")) == OK


def test_slo_alerts_that_cannot_read_their_logs_say_why_and_recover(tmp_path):
    alb = tmp_path / "alb"
    alerts = SloAlerts(parse_slo_spec(SLO_SPEC), [str(alb)])
    page = alerts.sources["slo:api-availability:page"]
    with pytest.raises(FileNotFoundError):
        alerts.read()
    assert page.assess(at("13:10")) == (
        INSUFFICIENT,
        f"cannot say: {alb}: no such file or directory",
    )
    generate(alb)
    alerts.read()
    assert alerts.error is None and page.state_at(at("13:10")) == ALARM


def test_lag_evaluates_the_windows_that_far_back(tmp_path):
    generate(tmp_path / "alb")
    alerts = SloAlerts(parse_slo_spec(SLO_SPEC), [str(tmp_path / "alb")], lag=600)
    alerts.read()
    page = alerts.sources["slo:api-availability:page"]
    assert page.state_at(at("13:05")) == OK  # sees up to 12:55
    assert page.state_at(at("13:15")) == ALARM
    with pytest.raises(ValueError, match="whole number of minutes"):
        SloAlerts(parse_slo_spec(SLO_SPEC), [], lag=90)


def test_slo_alerts_read_only_new_files_and_start_over_when_one_changes(tmp_path):
    alb = tmp_path / "alb"
    first = generate(alb, hours=1.5, lines=6_000, incident=False)
    spec = parse_slo_spec(SLO_SPEC)
    live = SloAlerts(spec, [str(alb)], quarantine=str(tmp_path / "q.jsonl"))
    assert live.read() == len(first) == 18
    assert live.read() == 0  # nothing new
    later = generate(alb, hours=1.5, lines=6_000, start=datetime(2024, 5, 1, 13, 30, tzinfo=UTC))
    assert live.read() == len(later)
    whole = SloAlerts(spec, [str(alb)], quarantine=str(tmp_path / "q2.jsonl"))
    whole.read()
    name = "api-availability"
    assert list(live.series[name]) == list(whole.series[name])
    assert live.stats.lines == whole.stats.lines == 12_000
    # A file that changes after it was read: everything is read again, nothing twice.
    with open(first[0], "a") as handle:
        handle.write("not an access log line\n")
    assert live.read() == 36
    assert live.stats.lines == 12_001 and live.stats.malformed == 1
    assert [(t, b.count) for t, b in live.series[name]] == [
        (t, b.count) for t, b in whole.series[name]
    ]
    live.close()
    # Files that end long before the earliest window an evaluation needs are not read.
    recent = SloAlerts(spec, [str(alb)])
    assert recent.read(not_before=at("14:00")) < 36


def test_the_monitor_asks_slo_sources_at_every_evaluation(tmp_path):
    generate(tmp_path / "alb")
    (tmp_path / "slo.yaml").write_text(SLO_SPEC)
    config = parse_config(
        f"""
slos: {{config: slo.yaml, alb: [alb/], quarantine: {tmp_path / "q.jsonl"}}}
composites:
  - name: api-down
    rule: ALARM("slo:api-availability:page")
""",
        source=str(tmp_path / "alarms.yaml"),
    )
    config.slo_alerts.read()
    monitor = Monitor(config)
    monitor.start_at(at("12:30"))
    monitor.evaluate_until(at("15:00"))
    down = [(t.at, t.state) for t in monitor.transitions if t.alarm == "api-down"]
    assert [s for _, s in down] == [OK, ALARM, OK]
    assert at("13:00") < down[1][0] <= at("13:05") and at("13:30") < down[2][0] <= at("14:00")
    alarm = next(n for n in monitor.notifications if n.alarm == "api-down")
    assert alarm.details["children"] == {"slo:api-availability:page": "ALARM"}
    page = next(t for t in monitor.transitions if t.alarm.endswith(":page") and t.state == ALARM)
    assert "burn rate" in page.reason


# --- alarms.yaml -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "alarms:\n  - name: a\n    engine_metric: runs_finish\n    threshold: 1",
            "alarms.yaml:3: alarm 'a': unknown engine metric 'runs_finish': did you mean",
        ),
        (
            "alarms:\n  - name: a\n    engine_metric: runs_finished\n    where:\n"
            "      saga: checkout\n      state: failed\n    threshold: 1",
            "alarms.yaml:6: alarm 'a': where: runs_finished has no label 'state'",
        ),
        (
            "alarms:\n  - name: a\n    engine_metric: runs_finished\n"
            "    where: {status: compensating}\n    threshold: 1",
            "alarms.yaml:4: alarm 'a': where: runs_finished never has status='compensating'",
        ),
        (
            "alarms:\n  - name: a\n    engine_metric: retries\n    threshold: 1\n    period: 90",
            "alarms.yaml:5: alarm 'a': period 90s: engine metrics are kept in one-minute "
            "buckets, so an alarm on an engine metric needs a period that is a multiple of "
            "60 seconds",
        ),
        (
            "period: 30\nalarms:\n  - name: a\n    engine_metric: retries\n    threshold: 1",
            "(the top-level period is used: set 'period' here)",
        ),
        (
            "alarms:\n  - name: a\n    engine_metric: step_seconds\n    threshold: 1\n"
            "    statistic: p99",
            "alarms.yaml:5: alarm 'a': statistic p99: engine metrics keep count, sum, min",
        ),
        (
            "alarms: [{name: a, engine_metric: queue_depth, threshold: 10}]",
            "queue_depth is a sampled gauge, so 'statistic' is required: max or avg",
        ),
        (
            "filters: [{name: f, pattern: ERROR}]\n"
            "alarms: [{name: a, metric: f, engine_metric: retries, threshold: 1}]",
            "give either 'metric' (a log filter of this file) or 'engine_metric'",
        ),
        (
            "filters: [{name: f, pattern: ERROR}]\n"
            "alarms: [{name: a, metric: f, where: {saga: x}, threshold: 1}]",
            "'where' selects labels of an engine metric",
        ),
        (
            "alarms: [{name: a, metric: retries, threshold: 1}]",
            "for the engine's own metric write 'engine_metric: retries'",
        ),
        (
            "alarms: [{name: a, threshold: 1}]",
            "'metric' (a filter of this file) or 'engine_metric' (one of runs_started",
        ),
        (
            "composites:\n  - name: c\n    rule: ALARM(slo:api:page)",
            "alarms.yaml:3: composite 'c': the rule refers to 'slo:api:page', an SLO alert, "
            "but no SLO file is declared",
        ),
        ('sources: ["slo:x:page"]', "names starting with 'slo:' are the SLO alerts"),
        (
            "slos: {config: does-not-exist.yaml}",
            "slos: the SLO file cannot be used: does-not-exist.yaml: cannot read",
        ),
    ],
)
def test_config_errors_for_engine_and_slo_sources_name_the_key_and_line(text, fragment):
    with pytest.raises(ConfigurationError) as caught:
        parse_config(text, source="alarms.yaml")
    assert fragment in str(caught.value), str(caught.value)


def test_unknown_slo_children_and_bad_lag_are_rejected_with_the_known_names(tmp_path):
    (tmp_path / "slo.yaml").write_text(SLO_SPEC)
    source = str(tmp_path / "alarms.yaml")
    with pytest.raises(ConfigurationError) as caught:
        parse_config(
            "slos: {config: slo.yaml}\ncomposites:\n"
            "  - {name: c, rule: 'ALARM(slo:api-availabilty:page)'}",
            source=source,
        )
    message = str(caught.value)
    assert f"{source}:3: composite 'c': the rule refers to 'slo:api-availabilty:page'" in message
    assert "did you mean 'slo:api-availability:page'?" in message
    assert "(its SLO alerts: slo:api-availability:page, slo:api-availability:ticket)" in message
    with pytest.raises(ConfigurationError, match=r":2: slos: lag '90s': SLO counts are per minute"):
        parse_config("slos:\n  lag: 90s\n  config: slo.yaml", source=source)
    (tmp_path / "bad.yaml").write_text("service: shop\nslos: []\n")
    with pytest.raises(
        ConfigurationError, match=r"bad.yaml, line 2: slos: expected a non-empty list"
    ):
        parse_config("slos: {config: bad.yaml}", source=source)


def test_the_store_comes_from_the_command_line_or_the_environment(monkeypatch):
    config = parse_config(
        "store: ${ALARM_TEST_DB}\nalarms: [{name: a, engine_metric: retries, threshold: 1}]"
    )
    assert config.store_url("sqlite:///given.db") == "sqlite:///given.db"
    with pytest.raises(ConfigurationError, match="environment variable ALARM_TEST_DB is not set"):
        config.store_url()
    monkeypatch.setenv("ALARM_TEST_DB", "sqlite:///env.db")
    config = parse_config(
        "store: ${ALARM_TEST_DB}\nalarms: [{name: a, engine_metric: retries, threshold: 1}]"
    )
    assert config.store_url() == "sqlite:///env.db"
    assert config.alarms["a"].statistic == "count"  # engine metrics count events by default


def test_the_readme_example_on_your_own_runs_is_the_example_file_and_valid():
    import re

    from tests.processes import ROOT

    section = (ROOT / "README.md").read_text().split("## Alarms: is the failure still going on?")[1]
    blocks = re.findall(r"```yaml\n(.*?)```", section.split("\n## ")[0], re.S)
    assert len(blocks) == 2, "the README's alarms section lost one of its two YAML examples"
    example = ROOT / "examples" / "alarms" / "runs.yaml"
    assert blocks[1] == example.read_text()
    parsed = parse_config(blocks[1])
    assert parsed.engine["checkouts-compensating"].describe() == (
        "runs_finished{saga=checkout,status=compensated}"
    )
    assert parsed.store_url() in ("sqlite:///shop.db", os.environ.get("SAGAWAY_DB"))
