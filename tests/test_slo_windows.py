"""Where SLO windows begin and end: every window is exactly (at - w, at], whatever the minute
buckets, for the report (on and between minute boundaries, to the microsecond), for a calendar
window, and for the alarms' SLO children. Counts are worked out by hand in each test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sagaway.cli import main
from sagaway.observe.slo import (
    SloAlerts,
    SloSpecError,
    evaluate_slo,
    parse_slo_spec,
    report_from_alb,
)
from tests.alb_lines import line

WEEK_SPEC = """\
service: shop
slos:
  - name: api
    objective: 99
    window: 7d
    indicator: {type: availability}
    min_requests: 0
"""
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write(path, entries: list[tuple[datetime, bool]]) -> str:
    """A log file with one request per (time, bad) entry; bad ones answer 500."""
    path.write_text(
        "".join(
            line(_stamp(t), status=500, target_status="500") + "\n"
            if bad
            else line(_stamp(t)) + "\n"
            for t, bad in entries
        )
    )
    return str(path)


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """Two requests a minute, at :15 and :45, from 2026-11-13 11:58 to 2026-11-20 12:01
    (both minutes included). Bad: the :15 request of 11:00, 11:05, ..., 11:45 (ten) and of
    11:57 and 11:59 on the 20th: twelve in the last hour before noon, none elsewhere."""
    bad_minutes = {NOON - timedelta(minutes=60 - 5 * k) for k in range(10)}
    bad_minutes |= {NOON - timedelta(minutes=3), NOON - timedelta(minutes=1)}
    entries = []
    minute = NOON - timedelta(days=7, minutes=2)
    while minute <= NOON + timedelta(minutes=1):
        entries.append((minute + timedelta(seconds=15), minute in bad_minutes))
        entries.append((minute + timedelta(seconds=45), False))
        minute += timedelta(minutes=1)
    root = tmp_path_factory.mktemp("week")
    (root / "slo.yaml").write_text(WEEK_SPEC)
    _write(root / "week.log", entries)
    return root


def _report(root, at: str, capsys) -> dict:
    code = main(
        [
            "slo",
            "report",
            "--config",
            str(root / "slo.yaml"),
            "--alb",
            str(root / "week.log"),
            "--at",
            at,
            "--json",
            "--quarantine",
            str(root / "q.jsonl"),
        ]
    )
    assert code == 0
    return json.loads(capsys.readouterr().out)["slos"][0]


def test_windows_with_at_on_a_minute_boundary_end_at_at_and_start_exactly_w_before(week, capsys):
    slo = _report(week, "2026-11-20T12:00:00Z", capsys)
    # The 7d window is (11-13 12:00:00, 11-20 12:00:00]: the minutes 11-13 12:00 to 11-20 11:59,
    # 7 x 1440 = 10,080 minutes x 2 requests = 20,160 requests; the 12 bad ones are all in it.
    assert (slo["window_start"], slo["window_end"]) == (
        "2026-11-13T12:00:00Z",
        "2026-11-20T12:00:00Z",
    )
    assert (slo["total"], slo["bad"]) == (20_160, 12)
    # 5m is (11:55:00, 12:00:00]: minutes 11:55 to 11:59, 5 x 2 = 10 requests, of which
    # 11:57:15 and 11:59:15 are bad: (2 / 10) / (1 - 0.99) = 20 (the minute after noon is not
    # in it: 12:00:15 is after at).
    assert slo["window_requests"]["5m"] == 10
    assert slo["burn_rates"]["5m"] == pytest.approx(20.0)
    # 1h is (11:00:00, 12:00:00]: 60 x 2 = 120 requests, all 12 bad ones: (12 / 120) / 0.01 = 10.
    assert slo["window_requests"]["1h"] == 120
    assert slo["burn_rates"]["1h"] == pytest.approx(10.0)
    # The whole window: (12 / 20,160) / 0.01 = 0.0595...
    assert slo["burn_rates"]["window"] == pytest.approx(12 / 20_160 / 0.01, abs=1e-3)


def test_windows_with_at_between_minutes_start_and_end_inside_their_minutes(week, capsys):
    slo = _report(week, "2026-11-20T12:00:30Z", capsys)
    assert (slo["window_start"], slo["window_end"]) == (
        "2026-11-13T12:00:30Z",
        "2026-11-20T12:00:30Z",
    )
    # 7d is (11-13 12:00:30, 11-20 12:00:30]: the first minute keeps only 12:00:45, the last
    # adds 12:00:15: 20,160 - 1 + 1 = 20,160 requests, 12 bad.
    assert (slo["total"], slo["bad"]) == (20_160, 12)
    # 5m is (11:55:30, 12:00:30]: 11:55:45, minutes 11:56 to 11:59 (8) and 12:00:15 = 10
    # requests; bad: 11:57:15 and 11:59:15: (2 / 10) / 0.01 = 20.
    assert slo["window_requests"]["5m"] == 10
    assert slo["burn_rates"]["5m"] == pytest.approx(20.0)
    # 1h is (11:00:30, 12:00:30]: 11:00:45, minutes 11:01 to 11:59 (118) and 12:00:15 = 120
    # requests; the bad 11:00:15 is before it: 11 bad, (11 / 120) / 0.01 = 9.167.
    assert slo["window_requests"]["1h"] == 120
    assert slo["burn_rates"]["1h"] == pytest.approx(11 / 120 / 0.01, abs=1e-3)


def test_a_request_at_exactly_at_counts_and_one_at_exactly_at_minus_w_does_not(tmp_path):
    spec = parse_slo_spec(WEEK_SPEC)
    for at in (NOON, NOON + timedelta(seconds=30, microseconds=250_000)):
        micro = timedelta(microseconds=1)
        five = timedelta(minutes=5)
        entries = [
            (at - five, True),  # on the 5m window's start: outside (at - 5m, at]
            (at - five + micro, False),  # inside
            (at, False),  # on its end: inside
            (at + micro, True),  # after at: never counted
        ]
        path = _write(tmp_path / f"edges-{at.second}.log", entries)
        report = report_from_alb(spec, [path], at=at, quarantine_path=str(tmp_path / "q.jsonl"))
        result = report.results[0]
        assert result.window_end == at.timestamp()
        assert result.window_requests["5m"] == 2, at  # at - 5m + 1 us and at
        assert result.burn_rates["5m"] == 0.0, at  # the bad one at exactly at - 5m is out
        assert (result.total, result.bad) == (3, 1), at  # the 7d window holds the first three


def test_a_calendar_window_with_at_between_minutes_starts_at_midnight(tmp_path):
    spec = parse_slo_spec(WEEK_SPEC.replace("window: 7d", "window: month"))
    first = datetime(2026, 11, 1, tzinfo=UTC)
    at = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)
    entries = [
        (first - timedelta(seconds=10), True),  # October: outside
        (first, True),  # exactly midnight: the end of October's window, not November's
        (first + timedelta(seconds=10), False),  # November
        (first + timedelta(seconds=50), True),  # November
        (at - timedelta(seconds=20), False),  # 12:00:10, in the 5m and the month
        (at + timedelta(seconds=20), True),  # 12:00:50: after at
    ]
    path = _write(tmp_path / "month.log", entries)
    result = report_from_alb(spec, [path], at=at, quarantine_path=str(tmp_path / "q.jsonl"))
    r = result.results[0]
    assert (r.window_start, r.window_end) == (first.timestamp(), at.timestamp())
    # (11-01 00:00:00, 11-20 12:00:30]: 00:00:10, 00:00:50 (bad) and 12:00:10.
    assert (r.total, r.bad) == (3, 1)
    assert r.window_requests["5m"] == 1 and r.burn_rates["5m"] == 0.0
    # The burn-down starts full at midnight and ends at what remains: 1 - 1 / (3 x 0.01).
    assert r.burn_down[0] == (first.timestamp(), 1.0)
    assert r.burn_down[-1] == (at.timestamp(), pytest.approx(1 - 1 / (3 * 0.01)))


def test_without_at_the_report_ends_with_the_minute_of_the_newest_entry(tmp_path):
    spec = parse_slo_spec(WEEK_SPEC)
    newest = NOON + timedelta(seconds=37, microseconds=500_000)
    entries = [
        (NOON - timedelta(minutes=4, seconds=30), True),  # 11:55:30: before the 5m window
        (NOON - timedelta(minutes=3, seconds=30), False),  # 11:56:30: in it
        (newest, False),
    ]
    path = _write(tmp_path / "a.log", entries)
    report = report_from_alb(spec, [path], quarantine_path=str(tmp_path / "q.jsonl"))
    r = report.results[0]
    # at is 12:01:00, the end of the minute holding 12:00:37.5; 5m is (11:56:00, 12:01:00].
    assert report.at == r.window_end == (NOON + timedelta(minutes=1)).timestamp()
    assert r.window_requests["5m"] == 2 and r.burn_rates["5m"] == 0.0
    assert (r.total, r.bad) == (3, 1)


def test_evaluate_slo_refuses_a_series_whose_minutes_do_not_end_at_at():
    from sagaway.observe.metrics import Series

    slo = parse_slo_spec(WEEK_SPEC).slos[0]
    at = NOON.timestamp() + 30
    with pytest.raises(ValueError, match="origin=at"):
        evaluate_slo(slo, Series(60), at)
    evaluate_slo(slo, Series(60, origin=at), at)  # aligned: fine


@pytest.mark.parametrize(
    "window",
    [
        "3630s",  # an hour and a half minute
        "61.5m",
        "7d\n    alerts: [{severity: page, long: 1h, short: 90s, threshold: 14}]",
    ],
)
def test_windows_that_are_not_whole_minutes_are_refused(window):
    # Requests are counted per minute: a window cut inside a minute could not be exact.
    with pytest.raises(SloSpecError, match="whole number of minutes"):
        parse_slo_spec(WEEK_SPEC.replace("window: 7d", f"window: {window}"))


def test_slo_alarm_windows_are_the_minutes_up_to_and_including_the_evaluation_minute(tmp_path):
    spec = parse_slo_spec(WEEK_SPEC)
    end = NOON
    entries = [
        (end - timedelta(minutes=5), False),  # on the 5m window's start: outside
        (end - timedelta(minutes=5), False),
        (end - timedelta(minutes=2), False),
        (end, True),  # on its end: inside
        (end + timedelta(seconds=1), True),  # after the evaluation's end
    ]
    path = _write(tmp_path / "a.log", entries)
    alerts = SloAlerts(spec, [path], quarantine=str(tmp_path / "q.jsonl"))
    alerts.read()
    # Evaluated at 12:00:40 the windows end at 12:00:00: 5m is (11:55:00, 12:00:00], holding
    # 11:58:00 and the bad 12:00:00: (1 / 2) / 0.01 = 50.
    result = alerts.result(spec.slos[0], (end + timedelta(seconds=40)).timestamp())
    assert result.window_end == end.timestamp()
    assert result.window_requests["5m"] == 2
    assert result.burn_rates["5m"] == pytest.approx(50.0)
