"""State monitoring, the monitor loop, log reading and alarms.yaml validation."""

import json
import os

import pytest

from sagaway.errors import ConfigurationError
from sagaway.observe import AlarmState
from sagaway.observe.alarms import (
    FileTail,
    IncidentTracker,
    Monitor,
    NotifyPolicy,
    TimestampReader,
    parse_config,
)

OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA


def run(tracker, states, period=60):
    """Feed states at 60s steps; return (at, kind, duration) of each notification."""
    out = []
    for i, state in enumerate(states, 1):
        for n in tracker.update(state, i * period):
            out.append((n.at, n.kind, n.duration))
    return out


# --- incident tracking -----------------------------------------------------------------


def test_transitions_reminders_and_recovery_with_duration():
    tracker = IncidentTracker("a", 60, NotifyPolicy(renotify_every=2))
    notes = run(tracker, [OK, OK, ALARM, ALARM, ALARM, ALARM, ALARM, OK, OK])
    assert notes == [
        (180, "ALARM", 0),
        (300, "RENOTIFY", 120),
        (420, "RENOTIFY", 240),
        (480, "OK", 300),
    ]


def test_quiet_start_is_not_notified_but_later_changes_are():
    tracker = IncidentTracker("a", 60, NotifyPolicy(flap_threshold=0))
    assert run(tracker, [INSUFFICIENT, OK, INSUFFICIENT, OK]) == [
        (180, "INSUFFICIENT_DATA", None),
        (240, "OK", None),
    ]


def test_a_detour_through_insufficient_data_does_not_end_the_incident():
    tracker = IncidentTracker("a", 60, NotifyPolicy(flap_threshold=0))
    notes = run(tracker, [ALARM, INSUFFICIENT, ALARM, OK])
    assert notes == [
        (60, "ALARM", 0),
        (120, "INSUFFICIENT_DATA", 60),
        (180, "ALARM", 120),
        (240, "OK", 180),
    ]


def test_no_reminders_without_renotify_every():
    tracker = IncidentTracker("a", 60)
    assert [k for _, k, _ in run(tracker, [ALARM] * 10)] == ["ALARM"]


def test_flapping_is_damped_to_one_notice_then_the_settled_state():
    policy = NotifyPolicy(renotify_every=1, flap_window=6, flap_threshold=3, flap_settle=3)
    tracker = IncidentTracker("a", 60, policy)
    states = [OK, ALARM, OK, ALARM, OK, ALARM, OK, ALARM, OK, OK, OK, OK]
    notes = run(tracker, states)
    kinds = [k for _, k, _ in notes]
    # ALARM, OK (recovery), then the third change trips damping; silence until OK holds.
    assert kinds == ["ALARM", "OK", "FLAPPING", "OK"]
    assert notes[-1][0] == 11 * 60 and tracker.flapping is False
    flapping = tracker.update(OK, 13 * 60)
    assert flapping == []


def test_recovery_after_flapping_carries_the_whole_incident():
    policy = NotifyPolicy(flap_window=4, flap_threshold=3, flap_settle=2)
    tracker = IncidentTracker("a", 60, policy)
    notes = run(tracker, [ALARM, OK, ALARM, OK, OK])
    assert notes[0][:2] == (60, "ALARM") and notes[1][:2] == (120, "OK")
    assert notes[2][1] == "FLAPPING"
    assert notes[-1] == (300, "OK", 120)  # the incident re-opened at 180


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"renotify_every": 0}, "renotify_every"),
        ({"flap_window": 1}, "flap_window"),
        ({"flap_threshold": 11}, "flap_threshold"),
        ({"flap_settle": 0}, "flap_settle"),
    ],
)
def test_policy_validation(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        NotifyPolicy(**kwargs)


# --- timestamps and files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "line", "expected"),
    [
        ({}, '{"timestamp": "2024-05-01T12:00:00Z", "x": 1}', 1714564800.0),
        ({}, '{"time": 1714564800123}', 1714564800.123),
        ({}, '{"@timestamp": "2024-05-01T14:00:00+02:00"}', 1714564800.0),
        ({}, '{"ts": "2024-05-01 12:00:00.5"}', 1714564800.5),
        ({"field": "$.meta.at"}, '{"meta": {"at": "2024-05-01T12:00:00Z"}}', 1714564800.0),
        ({}, "2024-05-01T12:00:00Z ERROR boom", 1714564800.0),
        ({}, '1.2.3.4 - - [01/May/2024:12:00:00 +0000] "GET / HTTP/1.1" 200 5', 1714564800.0),
        ({"field": "$2"}, "web1 1714564800 ERROR", 1714564800.0),
        (
            {"regex": r"at=(?P<ts>\S+)", "format": "%Y%m%d%H%M%S"},
            "x at=20240501120000",
            1714564800.0,
        ),
        ({}, "no time here", None),
        ({}, '{"timestamp": "yesterday"}', None),
        ({}, '{"timestamp": true}', None),
        ({}, '{"broken json', None),
        ({}, '{"timestamp": 1e999}', None),  # infinite: not a time
        ({}, '{"ts": 1' + "0" * 400 + "}", None),
        ({"format": "epoch"}, '{"ts": "nan"}', None),
        ({}, '{"ts": 1, "ts": 2, "x": ' + "[" * 100_000 + "}", None),  # too deep to parse
    ],
)
def test_timestamps_are_read_from_json_fields_columns_or_line_starts(kwargs, line, expected):
    assert TimestampReader(**kwargs).read(line) == expected


def test_file_tail_follows_appends_truncation_and_replacement(tmp_path):
    path = tmp_path / "app.log"
    path.write_text("old line\n")
    tail = FileTail(path)
    assert tail.read_lines() == []  # starts at the end
    with path.open("a") as f:
        f.write("one\ntw")
    assert tail.read_lines() == ["one"]  # the partial line waits for its newline
    with path.open("a") as f:
        f.write("o\n")
    assert tail.read_lines() == ["two"]
    path.write_text("")  # copytruncate
    with path.open("a") as f:
        f.write("after truncate\n")
    assert tail.read_lines() == ["after truncate"]
    with path.open("a") as f:
        f.write("last of old file\n")
    os.rename(path, tmp_path / "app.log.1")
    path.write_text("first of new file\n")
    assert tail.read_lines() == ["last of old file", "first of new file"]
    assert tail.rotations == 2
    tail.close()


def test_file_tail_waits_for_a_missing_file(tmp_path):
    tail = FileTail(tmp_path / "later.log", from_start=True)
    assert tail.read_lines() == []
    (tmp_path / "later.log").write_text("hello\n")
    assert tail.read_lines() == ["hello"]


# --- the monitor -------------------------------------------------------------------------------

BASE = 1_714_564_800


def line(offset, status, latency=10.0):
    ts = BASE + offset
    return json.dumps({"time": ts, "status": status, "latency": latency})


def test_monitor_evaluates_percentiles_composites_and_counts_undated_lines():
    config = parse_config(
        """
period: 60
filters:
  - {name: errors, pattern: '{ $.status >= 500 }', default: 0}
  - {name: latency, pattern: '{ $.latency = * }', value: $.latency}
alarms:
  - {name: error-rate, metric: errors, statistic: avg, threshold: 0.5}
  - {name: slow, metric: latency, statistic: p90, threshold: 100, period: 120}
composites:
  - {name: both, rule: ALARM(error-rate) AND ALARM(slow)}
"""
    )
    rejected = []
    monitor = Monitor(config, on_reject=lambda text, why: rejected.append(why))
    for i in range(10):
        monitor.feed(line(i, 200, 10))
    for i in range(10):
        monitor.feed(line(60 + i, 503 if i < 8 else 200, 500))
    for i in range(10):
        monitor.feed(line(120 + i, 503, 500))
    monitor.feed("not dated")
    monitor.evaluate_until(BASE + 180)
    changes = [(t.at - BASE, t.alarm, t.state) for t in monitor.transitions]
    assert (60, "error-rate", OK) in changes
    assert (120, "error-rate", ALARM) in changes  # 8 of 10 lines failed: avg 0.8
    assert (120, "slow", ALARM) in changes  # p90 of the 2-minute period is 500
    assert (120, "both", ALARM) in changes
    assert not any(t.alarm == "slow" and t.at == BASE + 60 for t in monitor.transitions)
    assert monitor.stats.undated == 1 and rejected == ["no readable timestamp"]
    # A line for a period already evaluated is late: counted, and still used later.
    monitor.feed(line(150, 200))
    assert monitor.stats.late == 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("period: 0", "'period' must be a whole number"),
        ("alarms: [{name: a, metric: nope, threshold: 1}]", "metric 'nope' is not a filter"),
        (
            "filters: [{name: errors, pattern: ERROR}]\n"
            "alarms: [{name: a, metric: errors, threshold: 1, evaluation_periods: 2,"
            " datapoints_to_alarm: 3}]",
            ":2: alarm 'a': datapoints_to_alarm (M) must be",
        ),
        (
            "filters: [{name: errors, pattern: ERROR}]\n"
            "alarms: [{name: a, metric: errors, threshold: 1, treshold: 2}]",
            "unknown key 'treshold'; did you mean 'threshold'?",
        ),
        (
            "filters: [{name: errors, pattern: ERROR}]\n"
            "alarms: [{name: a, metric: errors, threshold: 1, notify: [ops]}]",
            "alarms.yaml:2: alarm 'a': notify names 'ops', which is not a notifier",
        ),
        ("composites: [{name: c, rule: 'ALARM(x) AND'}]", "rule error at column 13"),
        ("composites: [{name: c, rule: 'ALARM(x)'}]", "refers to 'x', which is not"),
        (
            "composites:\n  - {name: a, rule: ALARM(b)}\n  - {name: b, rule: ALARM(a)}",
            "cycle: a -> b -> a",
        ),
        ("notifiers: [{name: n, type: pager}]", "'type' must be one of webhook"),
        (
            "notifiers: [{name: n, type: webhook, url: 'ftp://x'}]",
            "must be an http(s) URL such as https://hooks.example.com/…, but its scheme is 'ftp'",
        ),
        (
            "notifiers: [{name: n, type: webhook, url: 'not a url'}]",
            "but it has no http(s):// scheme",
        ),
        (
            "notifiers: [{name: n, type: slack, url: '${NOT_SET_ANYWHERE_42}'}]",
            "alarms.yaml:1: notifier 'n': environment variable NOT_SET_ANYWHERE_42 is not set",
        ),
        ("filters: [{name: f, pattern: ERROR, value: $.x}]", "must be a JSON pattern"),
        ("timestamp: {field: time}", "must be a JSON selector"),
        ("filters: [oops", "not valid YAML"),
        ("delivery: {attempts: 0}", "attempts"),
    ],
)
def test_config_errors_name_the_entry_and_the_fix(text, fragment):
    with pytest.raises(ConfigurationError) as caught:
        parse_config(text, source="alarms.yaml")
    message = str(caught.value)
    assert message.startswith("alarms.yaml"), message
    assert message.count("alarms.yaml") == 1, message  # one place, said once
    assert fragment in message, message


def test_config_reads_secrets_from_the_environment(monkeypatch):
    monkeypatch.setenv("HOOK_URL", "https://hooks.example.com/T/B/secret")
    config = parse_config(
        "notifiers:\n"
        "  - {name: s, type: slack, url: '${HOOK_URL}',\n"
        "     headers: {Authorization: 'Bearer ${TOKEN:-none}'}}"
    )
    notifier = config.notifiers["s"]
    assert notifier.url.endswith("/secret") and notifier.headers == {"Authorization": "Bearer none"}
