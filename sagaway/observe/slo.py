"""SLO computation: error budgets, multi-window burn rates, alerts and burn-down series.

Definitions (also in docs/slo.md), for an SLO with objective `o` over a window holding `total`
requests of which `bad` were bad:

- SLI = (total - bad) / total
- error budget allowed = total x (1 - o): the number of bad requests the objective tolerates
- consumed = bad / allowed (a fraction of the budget; above 1 the objective is missed);
  remaining = 1 - consumed
- burn rate over a window w = (bad_w / total_w) / (1 - o): 1 spends the budget exactly over the
  SLO window, 14.4 spends 2% of a 30-day budget in one hour. The `window` burn rate equals
  `consumed`.

Windows are whole minutes and end with the minute holding the evaluation time. The counts come
from a one-minute `Series` per SLO whose bucket `count` is requests and `total` is bad requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sagaway.observe.alb import Quarantine, find_log_files
from sagaway.observe.alb_scan import Counter, SourceStats, request_filter, scan_alb
from sagaway.observe.series import Series
from sagaway.observe.slo_spec import SloDefinition, SloSpec, parse_duration

__all__ = [
    "BURN_WINDOWS",
    "AlertState",
    "ErrorBudget",
    "SloReport",
    "SloResult",
    "counter_for",
    "evaluate_slo",
    "report_from_alb",
]

# The windows every report gives a burn rate for (those of the SRE Workbook's alerts).
BURN_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
MINUTE = 60.0


@dataclass(frozen=True)
class ErrorBudget:
    """`allowed` bad requests, `consumed` and `remaining` fractions of that budget."""

    allowed: float
    consumed: float
    remaining: float


@dataclass(frozen=True)
class AlertState:
    """One multi-window alert at the evaluation time. `firing` needs both burn rates at or above
    `threshold` and both windows holding at least the SLO's `min_requests` (else `low_traffic`)."""

    severity: str
    long: str
    short: str
    threshold: float
    long_burn_rate: float
    short_burn_rate: float
    low_traffic: bool
    firing: bool


@dataclass
class SloResult:
    """Everything the report shows for one SLO at one evaluation time."""

    slo: SloDefinition
    at: float
    window_start: float
    window_end: float
    period_end: float
    total: int
    bad: int
    sli: float | None
    error_budget: ErrorBudget
    burn_rates: dict[str, float]
    window_requests: dict[str, int]
    alerts: list[AlertState]
    burn_down: list[tuple[float, float]] = field(default_factory=list)
    burn_history: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


@dataclass
class SloReport:
    """A whole report: evaluation time, what was read, and one result per SLO."""

    spec: SloSpec
    at: float | None
    source: SourceStats
    results: list[SloResult]


def _window_bounds(slo: SloDefinition, at: float) -> tuple[float, float, float]:
    """(start, end, period end) in seconds: `end` is the end of the minute holding `at`."""
    end = math.floor(at / MINUTE) * MINUTE + MINUTE
    window = slo.window
    if window.seconds is not None:
        return end - window.seconds, end, end
    moment = datetime.fromtimestamp(at, UTC)
    if window.calendar == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (start + timedelta(days=32)).replace(day=1)
    else:  # week, starting Monday
        start = (moment - timedelta(days=moment.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        following = start + timedelta(days=7)
    return start.timestamp(), end, following.timestamp()


def _burn(series: Series, start: float, end: float, budget: float) -> tuple[float, int]:
    total = series.count_between(start, end)
    if total == 0:
        return 0.0, 0
    return series.sum_between(start, end) / total / budget, total


def _reaches(rate: float, threshold: float) -> bool:
    """rate >= threshold, forgiving binary rounding (864 bad of 60000 at 99.9% is 14.4)."""
    return rate >= threshold * (1 - 1e-9)


def evaluate_slo(slo: SloDefinition, series: Series, at: float, *, points: int = 400) -> SloResult:
    """Evaluate `slo` at `at` (seconds since the epoch) from its one-minute request series.

    `points` bounds the length of the burn-down and burn-rate chart series.
    """
    start, end, period_end = _window_bounds(slo, at)
    budget = slo.budget
    total = series.count_between(start, end)
    bad = round(series.sum_between(start, end))
    allowed = total * budget
    consumed = bad / allowed if allowed > 0 else 0.0
    windows = list(BURN_WINDOWS)
    for rule in slo.alerts:
        for label in (rule.long, rule.short):
            if label not in windows:
                windows.append(label)
    burn_rates: dict[str, float] = {}
    requests: dict[str, int] = {}
    for label in windows:
        burn_rates[label], requests[label] = _burn(series, end - parse_duration(label), end, budget)
    burn_rates["window"] = consumed
    requests["window"] = total
    alerts = []
    for rule in slo.alerts:
        long_rate, short_rate = burn_rates[rule.long], burn_rates[rule.short]
        quiet = min(requests[rule.long], requests[rule.short]) < max(slo.min_requests, 1)
        alerts.append(
            AlertState(
                severity=rule.severity,
                long=rule.long,
                short=rule.short,
                threshold=rule.threshold,
                long_burn_rate=long_rate,
                short_burn_rate=short_rate,
                low_traffic=quiet,
                firing=(
                    not quiet
                    and _reaches(long_rate, rule.threshold)
                    and _reaches(short_rate, rule.threshold)
                ),
            )
        )
    result = SloResult(
        slo=slo,
        at=at,
        window_start=start,
        window_end=end,
        period_end=period_end,
        total=total,
        bad=bad,
        sli=(total - bad) / total if total else None,
        error_budget=ErrorBudget(allowed=allowed, consumed=consumed, remaining=1.0 - consumed),
        burn_rates=burn_rates,
        window_requests=requests,
        alerts=alerts,
    )
    result.burn_down = _burn_down(series, start, end, allowed, points)
    result.burn_history = _burn_history(slo, series, start, end, points)
    return result


def _step(span: float, points: int) -> float:
    return max(MINUTE, math.ceil(span / max(points, 1) / MINUTE) * MINUTE)


def _burn_down(
    series: Series, start: float, end: float, allowed: float, points: int
) -> list[tuple[float, float]]:
    """Remaining budget (fraction of the whole window's allowance) at regular times from the
    window start to its end: 1 at the start, the reported `remaining` at the end."""
    step = _step(end - start, points)
    out = []
    t = start
    while True:
        t = min(t, end)
        spent = series.sum_between(start, t)
        out.append((t, 1.0 - spent / allowed if allowed > 0 else 1.0))
        if t >= end:
            return out
        t += step


def _burn_history(
    slo: SloDefinition, series: Series, start: float, end: float, points: int
) -> dict[str, list[tuple[float, float]]]:
    """Burn rate over each alert's long window, sampled over the last week of the window (or
    the whole window if shorter)."""
    span = min(end - start, 7 * 86400.0)
    step = _step(span, points)
    out: dict[str, list[tuple[float, float]]] = {}
    for label in dict.fromkeys(rule.long for rule in slo.alerts):
        width = parse_duration(label)
        samples = []
        t = end - span
        while t <= end:
            samples.append((t, _burn(series, t - width, t, slo.budget)[0]))
            t += step
        out[label] = samples
    return out


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# A request the load balancer could not send to a target: a processing time of -1 (except for
# its deliberate answers, redirects and 4xx such as fixed responses or WAF blocks), or a 5xx
# that no target answered.
ELB_FAILURE_SQL = (
    "((request_processing_time = -1 OR target_processing_time = -1"
    " OR response_processing_time = -1) AND NOT elb_status BETWEEN 300 AND 499)"
    " OR (elb_status >= 500 AND target_status IS NULL)"
)


def counter_for(slo: SloDefinition) -> Counter:
    """The SQL conditions that count `slo`'s requests and bad requests in ALB logs."""
    f = slo.filter
    where = [request_filter(f.host, f.path_prefix, f.method)]
    if f.path_regex is not None:
        where.append(f"regexp_matches(path, {_sql_text(f.path_regex)})")
    indicator = slo.indicator
    if indicator.type == "availability":
        terms = []
        for status in indicator.bad_status:
            if status.endswith("xx"):
                terms.append(f"elb_status BETWEEN {status[0]}00 AND {status[0]}99")
            else:
                terms.append(f"elb_status = {int(status)}")
        bad = " OR ".join(terms)
    else:
        # Rounded to the microsecond: the log has milliseconds, and 0.1 + 0.1 + 0.1 is not 0.3.
        bad = (
            "round(greatest(request_processing_time, 0) + greatest(target_processing_time, 0)"
            f" + greatest(response_processing_time, 0), 6) > {indicator.threshold!r}"
        )
    return Counter(
        name=slo.name,
        where=" AND ".join(where),
        bad=f"({bad}) OR ({ELB_FAILURE_SQL})",
    )


def report_from_alb(
    spec: SloSpec,
    paths: Sequence[str],
    *,
    at: datetime | None = None,
    quarantine_path: str = "alb-quarantine.jsonl",
    points: int = 400,
) -> SloReport:
    """Read ALB access logs (files or directories) and evaluate every SLO of `spec`.

    `at` defaults to the newest log entry. Raises FileNotFoundError / ValueError for paths that
    hold no logs; malformed lines never raise: they are counted and written to
    `quarantine_path` (created only if there is one).
    """
    files = find_log_files(paths)
    with Quarantine(quarantine_path) as quarantine:
        scan = scan_alb(files, [counter_for(s) for s in spec.slos], quarantine=quarantine, at=at)
    moment = at.timestamp() if at is not None else scan.source.last
    results = []
    if moment is not None:
        for slo in spec.slos:
            results.append(evaluate_slo(slo, scan.series[slo.name], moment, points=points))
    return SloReport(spec=spec, at=moment, source=scan.source, results=results)
