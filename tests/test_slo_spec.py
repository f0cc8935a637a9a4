"""SLO specifications: what the YAML means, and errors that name the line, the key and the fix."""

from __future__ import annotations

import pytest

from sagaway.observe.slo import DEFAULT_ALERTS, SloSpecError, load_slo_spec, parse_slo_spec

ISSUE_SPEC = """\
service: shop
slos:
  - name: api-availability
    objective: 99.9            # percent
    window: 30d                # rolling; also calendar: month
    indicator: {type: availability, bad_status: ["5xx"]}   # status classes or codes
    filter: {host: shop.example.com, path_prefix: /api/, method: [GET, POST]}
  - name: api-latency
    objective: 99
    window: 30d
    indicator: {type: latency, threshold: 0.3}   # seconds of request+target+response time
"""


def test_the_issue_example_spec():
    spec = parse_slo_spec(ISSUE_SPEC)
    availability, latency = spec.slos
    assert spec.service == "shop"
    assert availability.objective == 0.999 and availability.budget == 0.001
    assert availability.window.seconds == 30 * 86400 and availability.window.label == "30d"
    assert availability.indicator.bad_status == ("5xx",)
    assert availability.filter.host == ("shop.example.com",)
    assert availability.filter.method == ("GET", "POST")
    assert availability.filter.path_prefix == ("/api/",)
    assert latency.indicator.threshold == 0.3
    assert latency.alerts == DEFAULT_ALERTS and latency.min_requests == 100


def test_calendar_windows_codes_durations_and_defaults():
    spec = parse_slo_spec(
        "service: s\n"
        "defaults: {min_requests: 20}\n"
        "slos:\n"
        "  - {name: a, objective: '99.95%', window: {calendar: month},"
        " indicator: {type: availability, bad_status: [5xx, 429]}}\n"
        "  - {name: b, objective: 90, window: 4w, indicator: {type: latency, threshold: 250ms},"
        " min_requests: 0}\n"
    )
    a, b = spec.slos
    assert a.window.calendar == "month" and a.objective == 0.9995
    assert a.indicator.bad_status == ("5xx", "429") and a.min_requests == 20
    assert b.window.label == "4w" and b.indicator.threshold == 0.25 and b.min_requests == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            ISSUE_SPEC.replace("    filter:", "    filtre:"),
            "line 7: slos[0].filtre: unknown key 'filtre'; allowed here: alerts, description,",
        ),
        (ISSUE_SPEC.replace("objective: 99\n", "objective: 100\n"), "line 9: slos[1].objective"),
        (ISSUE_SPEC.replace("window: 30d   ", "window: 30x   "), "line 5: slos[0].window"),
        (
            ISSUE_SPEC.replace("type: latency", "type: latancy"),
            "line 11: slos[1].indicator.type: unknown indicator type 'latancy'",
        ),
        (ISSUE_SPEC.replace('["5xx"]', '["6xx"]'), "slos[0].indicator.bad_status: '6xx'"),
        (ISSUE_SPEC.replace("threshold: 0.3", "threshold: fast"), "slos[1].indicator.threshold"),
        (ISSUE_SPEC.replace("[GET, POST]", "[GET, FETCH]"), "'FETCH' is not an HTTP method"),
        (ISSUE_SPEC.replace("path_prefix: /api/", "path_prefix: api"), "must start with /"),
        (ISSUE_SPEC.replace("name: api-latency", "name: api-availability"), "already named"),
        (ISSUE_SPEC.replace("service: shop\n", ""), "missing required key 'service'"),
        (ISSUE_SPEC.replace("window: 30d   ", "window: 5m    "), "too short"),
        ("service: shop\nslos: []\n", "line 2: slos: expected a non-empty list"),
        ("service: [unclosed\n", "line 2: not valid YAML"),
        ("", "the file is empty"),
        (
            ISSUE_SPEC.replace("objective: 99.9 ", "objective: 0.999"),
            "objective 0.999 is read as 0.999 percent: objectives are percentages, write 99.9",
        ),
        (
            ISSUE_SPEC.replace("threshold: 0.3", "threshold: 300"),
            "300 is read as 300 seconds: a bare number is seconds (0.3 is 300 ms)",
        ),
        (
            ISSUE_SPEC.replace("path_prefix: /api/", "path_regex: '^/api/(?!internal)'"),
            "slos[0].filter.path_regex: lookarounds and backreferences are not supported",
        ),
    ],
)
def test_errors_name_the_line_the_key_and_the_fix(text, message):
    with pytest.raises(SloSpecError) as info:
        parse_slo_spec(text, "slo.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("slo.yaml")


def test_alert_overrides_are_validated(tmp_path):
    path = tmp_path / "slo.yaml"
    path.write_text(
        ISSUE_SPEC + "    alerts:\n      - {severity: page, long: 5m, short: 1h, threshold: 10}\n"
    )
    with pytest.raises(SloSpecError, match=r"line 13: .*short window must be shorter"):
        load_slo_spec(path)
    with pytest.raises(SloSpecError, match="cannot read"):
        load_slo_spec(tmp_path / "missing.yaml")
    path.write_bytes(b"service: shop\n\xff\xfe")
    with pytest.raises(SloSpecError, match=r"not UTF-8 text \(byte 14\): save it as UTF-8"):
        load_slo_spec(path)
