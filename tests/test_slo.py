"""Error budgets, burn rates and alerts against values computed by hand (arithmetic in the test),
including the SRE Workbook's own numbers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sagaway.observe.metrics import Series
from sagaway.observe.slo import evaluate_slo, parse_slo_spec

HOUR, DAY = 3600.0, 86400.0
AT = datetime(2024, 6, 1, 0, 0, tzinfo=UTC).timestamp()  # the evaluation time
END = AT  # where every window ends


def slo(objective="99.9", window="30d", extra=""):
    spec = parse_slo_spec(
        f"service: shop\nslos:\n  - name: api\n    objective: {objective}\n"
        f"    window: {window}\n    indicator: {{type: availability}}\n{extra}"
    )
    return spec.slos[0]


def series(minutes):
    """A one-minute series from {minutes before END: (requests, bad)}; the minute `back`
    minutes before END holds the requests of (END - 60 x back, END - 60 x (back - 1)]."""
    s = Series(60)
    for back, (requests, bad) in minutes.items():
        s.merge(END - 60 * back, count=requests, total=bad)
    return s


def test_the_issue_example_998_requests_3_bad_at_99_9_percent():
    # 998 requests spread over the last 998 minutes, 3 of them bad.
    s = series({m: (1, 1 if m in (10, 500, 900) else 0) for m in range(1, 999)})
    r = evaluate_slo(slo(), s, AT)
    assert (r.total, r.bad) == (998, 3)
    assert r.sli == pytest.approx(995 / 998)  # 0.99699
    allowed = 998 * (1 - 0.999)  # 0.998 bad requests allowed
    assert r.error_budget.allowed == pytest.approx(allowed)
    assert r.error_budget.consumed == pytest.approx(3 / allowed)  # 3.006
    assert r.error_budget.remaining == pytest.approx(1 - 3 / allowed)  # -2.006
    assert r.burn_rates["window"] == pytest.approx((3 / 998) / 0.001)  # 3.006, as consumed
    # Only the bad request 10 minutes ago is in the 30m..1d windows; none in the last 5 minutes.
    assert r.burn_rates["5m"] == 0.0
    assert r.burn_rates["30m"] == pytest.approx((1 / 30) / 0.001)
    assert r.burn_rates["1h"] == pytest.approx((1 / 60) / 0.001)
    assert r.burn_rates["6h"] == pytest.approx((1 / 360) / 0.001)
    assert r.burn_rates["1d"] == pytest.approx((3 / 998) / 0.001)  # all 998 minutes are < 1 day
    assert [(a.severity, a.long, a.short, a.threshold) for a in r.alerts] == [
        ("page", "1h", "5m", 14.4),
        ("page", "6h", "30m", 6.0),
        ("ticket", "1d", "2h", 3.0),
        ("ticket", "3d", "6h", 1.0),
    ]
    # 1 request a minute: the 5m and 30m windows hold fewer than 100 requests.
    assert [a.low_traffic for a in r.alerts] == [True, True, False, False]
    # 1d: 3.006 >= 3 and 2h: (1 / 120) / 0.001 = 8.33 >= 3; 3d: 3.006 and 6h: 2.78 >= 1.
    assert r.burn_rates["2h"] == pytest.approx((1 / 120) / 0.001)
    assert [a.firing for a in r.alerts] == [False, False, True, True]


def test_sre_workbook_two_percent_of_a_30_day_budget_in_one_hour_is_burn_rate_14_4():
    # 1000 requests a minute for 30 days; objective 99.9%: the budget is
    # 30 * 1440 * 1000 * 0.001 = 43,200 bad requests; 2% of it = 864, all in the last hour.
    minutes = {m: (1000, 0) for m in range(1, 30 * 1440 + 1)}
    for m in range(1, 61):
        minutes[m] = (1000, 864 / 60)  # 14.4 bad a minute
    r = evaluate_slo(slo(), series(minutes), AT)
    assert r.error_budget.allowed == pytest.approx(43_200)
    assert r.error_budget.consumed == pytest.approx(0.02)
    assert r.burn_rates["1h"] == pytest.approx(14.4)  # (864 / 60,000) / 0.001
    assert r.burn_rates["5m"] == pytest.approx(14.4)
    assert r.burn_rates["6h"] == pytest.approx(14.4 / 6)  # same 864 over 360,000 requests
    page = r.alerts[0]
    assert page.firing and not page.low_traffic  # 14.4 >= 14.4: the threshold is inclusive
    assert not r.alerts[1].firing  # 6h burn 2.4 < 6
    # 5% in 6 hours is the second page: 2160 bad over 360,000 requests -> burn rate 6.
    minutes = {m: (1000, 2160 / 360 if m <= 360 else 0) for m in range(1, 30 * 1440 + 1)}
    r = evaluate_slo(slo(), series(minutes), AT)
    assert r.burn_rates["6h"] == pytest.approx(6.0)
    assert [a.firing for a in r.alerts] == [False, True, False, False]


def test_ticket_alerts_use_one_and_three_day_windows():
    # 10% of the budget in 3 days -> burn rate 1: 4,320 bad over 4,320,000 requests.
    minutes = {m: (1000, 1.0 if m <= 3 * 1440 else 0) for m in range(1, 30 * 1440 + 1)}
    r = evaluate_slo(slo(), series(minutes), AT)
    assert r.burn_rates["3d"] == pytest.approx(1.0)
    assert r.burn_rates["1d"] == pytest.approx(1.0)
    assert r.error_budget.consumed == pytest.approx(0.1)
    assert [a.firing for a in r.alerts] == [False, False, False, True]


def test_low_traffic_guard_reports_the_burn_rate_but_does_not_fire():
    # 5 requests in the last 5 minutes, all bad: burn rate 1000 everywhere, but < 100 requests.
    s = series({m: (1, 1) for m in range(1, 6)})
    r = evaluate_slo(slo(), s, AT)
    assert r.burn_rates["5m"] == pytest.approx(1 / 0.001)
    assert r.burn_rates["1h"] == pytest.approx(1000.0)
    assert all(a.low_traffic and not a.firing for a in r.alerts)
    guarded_off = evaluate_slo(slo(extra="    min_requests: 0\n"), s, AT)
    assert all(a.firing for a in guarded_off.alerts)


def test_windows_are_the_whole_minutes_before_at():
    # A bad request in the minute 6 minutes back is just outside the 5m window (END - 300, END].
    s = series({5: (10, 0), 6: (10, 10)})
    r = evaluate_slo(slo(extra="    min_requests: 0\n"), s, AT)
    assert r.window_end == END and r.window_start == END - 30 * DAY
    assert r.window_requests["5m"] == 10 and r.burn_rates["5m"] == 0.0
    assert r.burn_rates["30m"] == pytest.approx((10 / 20) / 0.001)


def test_minutes_ending_between_clock_minutes_make_exact_windows_there():
    at = AT - 30  # 23:59:30
    s = Series(60, origin=at)
    s.merge(at - 30, count=10, total=1)  # (23:58:30, 23:59:30]
    s.merge(at - 300 + 30, count=10, total=0)  # (23:54:30, 23:55:30]: the 5m window's first
    s.merge(at - 300 - 30, count=10, total=10)  # (23:53:30, 23:54:30]: before it
    r = evaluate_slo(slo(extra="    min_requests: 0\n"), s, at)
    assert (r.window_start, r.window_end) == (at - 30 * DAY, at)
    assert r.window_requests["5m"] == 20 and r.burn_rates["5m"] == pytest.approx(1 / 20 / 0.001)
    assert r.window_requests["30m"] == 30


def test_no_requests_means_a_full_budget_and_no_sli():
    r = evaluate_slo(slo(), Series(60), AT)
    assert (r.total, r.sli, r.error_budget.remaining) == (0, None, 1.0)
    assert all(v == 0.0 for v in r.burn_rates.values())


def test_calendar_month_window_starts_on_the_first_of_the_month():
    at = datetime(2024, 5, 15, 12, 0, tzinfo=UTC).timestamp()
    s = Series(60)
    s.merge(datetime(2024, 4, 30, 23, 59, tzinfo=UTC).timestamp(), count=100, total=100)
    s.merge(datetime(2024, 5, 1, 0, 0, tzinfo=UTC).timestamp(), count=1000, total=2)
    r = evaluate_slo(slo(window="month"), s, at)
    assert r.window_start == datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    assert r.period_end == datetime(2024, 6, 1, tzinfo=UTC).timestamp()
    assert (r.total, r.bad) == (1000, 2)
    assert r.error_budget.consumed == pytest.approx(2 / (1000 * 0.001))
    week = evaluate_slo(slo(window="week"), s, at)  # 2024-05-15 is a Wednesday
    assert week.window_start == datetime(2024, 5, 13, tzinfo=UTC).timestamp()


def test_burn_down_runs_from_a_full_budget_to_what_remains():
    minutes = {m: (100, 0) for m in range(1, 1440 + 1)}
    minutes[720] = (100, 30)  # half a day ago: 30 bad of 144,000 allowed 144
    r = evaluate_slo(slo(window="1d"), series(minutes), AT, points=48)
    assert r.burn_down[0] == (END - DAY, 1.0)
    assert r.burn_down[-1][0] == END
    assert r.burn_down[-1][1] == pytest.approx(r.error_budget.remaining)
    assert r.error_budget.remaining == pytest.approx(1 - 30 / 144)
    values = [v for _, v in r.burn_down]
    assert values == sorted(values, reverse=True)  # a burn-down never goes up
    assert len(r.burn_down) <= 50
    assert set(r.burn_history) == {"1h", "6h", "1d", "3d"}


def test_custom_alert_windows_get_their_own_burn_rates():
    extra = "    alerts:\n      - {severity: page, long: 15m, short: 1m, threshold: 20}\n"
    s = series({m: (100, 5) for m in range(1, 16)})  # 5% errors for 15 minutes
    r = evaluate_slo(slo(extra=extra), s, AT)
    assert r.burn_rates["15m"] == pytest.approx(0.05 / 0.001)
    assert r.burn_rates["1m"] == pytest.approx(50.0)
    assert [(a.long, a.short, a.firing) for a in r.alerts] == [("15m", "1m", True)]


def test_json_reproduces_the_issue_example_numbers():
    from sagaway.observe.slo import SloReport, SourceStats, report_json

    spec = parse_slo_spec(
        "service: shop\nslos:\n  - name: api-availability\n    objective: 99.9\n"
        "    window: 30d\n    indicator: {type: availability}\n"
    )
    # 998 requests, one every 40 minutes (27.7 days); the 3 bad ones are over 3 days old.
    s = series({40 * i: (1, 1 if i in (900, 950, 990) else 0) for i in range(1, 999)})
    result = evaluate_slo(spec.slos[0], s, AT)
    source = SourceStats(files=3, lines=1000, parsed=998, malformed=2, quarantine="q.jsonl")
    data = report_json(SloReport(spec=spec, at=AT, source=source, results=[result]))
    assert data["at"] == "2024-06-01T00:00:00Z"
    assert {k: data["source"][k] for k in ("files", "lines", "parsed", "malformed")} == {
        "files": 3,
        "lines": 1000,
        "parsed": 998,
        "malformed": 2,
    }
    slo_json = data["slos"][0]
    assert (slo_json["name"], slo_json["objective"], slo_json["window"]) == (
        "api-availability",
        0.999,
        "30d",
    )
    assert (slo_json["total"], slo_json["bad"], slo_json["sli"]) == (998, 3, 0.99699)
    assert slo_json["error_budget"] == {"allowed": 0.998, "consumed": 3.006, "remaining": -2.006}
    assert slo_json["burn_rates"] == {
        "5m": 0.0,
        "30m": 0.0,
        "1h": 0.0,
        "2h": 0.0,
        "6h": 0.0,
        "1d": 0.0,
        "3d": 0.0,
        "window": 3.006,
    }
    assert slo_json["alerts"][0] == {
        "severity": "page",
        "long": "1h",
        "short": "5m",
        "threshold": 14.4,
        "firing": False,
        "long_burn_rate": 0.0,
        "short_burn_rate": 0.0,
        "low_traffic": True,
    }
