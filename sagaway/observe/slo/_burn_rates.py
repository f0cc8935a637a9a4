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

Every window ends at the evaluation time `at` and holds the requests logged in (start, at]: a
rolling window of w starts at at - w, a calendar one at midnight UTC of its first day. The counts
come from a one-minute `Series` per SLO whose bucket `count` is requests and `total` is bad
requests, and whose minutes end at `at` (hold their end, not their start), so that every window
is made of whole minutes and its counts are exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sagaway.observe.metrics._series import Series
from sagaway.observe.slo._alb import Quarantine, find_log_files
from sagaway.observe.slo._alb_scan import Counter, SourceStats, request_filter, scan_alb, sql_time
from sagaway.observe.slo._spec import SloDefinition, SloSpec, parse_duration

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


def _window_bounds(slo: SloDefinition, at: float) -> tuple[float, float]:
    """(start, period end) in seconds: a rolling window's period ends at `at`."""
    window = slo.window
    if window.seconds is not None:
        return at - window.seconds, at
    moment = datetime.fromtimestamp(at, UTC)
    if window.calendar == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (start + timedelta(days=32)).replace(day=1)
    else:  # week, starting Monday
        start = (moment - timedelta(days=moment.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        following = start + timedelta(days=7)
    return start.timestamp(), following.timestamp()


def _burn(series: Series, start: float, end: float, budget: float) -> tuple[float, int]:
    total = series.count_between(start, end)
    if total == 0:
        return 0.0, 0
    return series.sum_between(start, end) / total / budget, total


def _reaches(rate: float, threshold: float) -> bool:
    """rate >= threshold, forgiving binary rounding (864 bad of 60000 at 99.9% is 14.4)."""
    return rate >= threshold * (1 - 1e-9)


def evaluate_slo(
    slo: SloDefinition,
    series: Series,
    at: float,
    *,
    points: int = 400,
    since_start: Series | None = None,
) -> SloResult:
    """Evaluate `slo` at `at` (seconds since the epoch) from its one-minute request series.

    Each window holds the requests of (start, at]. The series' minutes must end at `at`
    (`Series(60, origin=at)`, as `scan_alb(..., at=...)` builds them; whole minutes of the clock
    for an `at` on one). A calendar window starts at midnight, inside a minute of such a series
    when `at` is not a whole minute: `since_start` then gives the same counts taken only after
    the window's start (`report_from_alb` counts both). `points` bounds the length of the
    burn-down and burn-rate chart series. Raises ValueError when the minutes do not fit.
    """
    _check_minutes(series, at, "series")
    start, period_end = _window_bounds(slo, at)
    end = at
    window, first = series, start
    if not series.is_boundary(start):
        if since_start is None:
            raise ValueError(
                f"the {slo.window.label} window of {slo.name} starts inside a minute of the "
                "series: give since_start, the same requests counted only after the start"
            )
        _check_minutes(since_start, at, "since_start")
        # Its minute holding the start counts only what came after the start: take it whole.
        window, first = since_start, start - since_start.period
    budget = slo.budget
    total = window.count_between(first, end)
    bad = round(window.sum_between(first, end))
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
    result.burn_down = _burn_down(window, first, start, end, allowed, points)
    result.burn_history = _burn_history(slo, series, start, end, points)
    return result


def _check_minutes(series: Series, at: float, name: str) -> None:
    if series.period != MINUTE or not series.is_boundary(at):
        raise ValueError(
            f"{name} must have one-minute buckets ending at the evaluation time "
            "(Series(60, origin=at)), so that its windows are exact"
        )


def _step(span: float, points: int) -> float:
    return max(MINUTE, math.ceil(span / max(points, 1) / MINUTE) * MINUTE)


def _sample_times(start: float, end: float, step: float) -> list[float]:
    """Times after `start` up to `end`, `step` apart and counted back from `end` (so each is a
    minute boundary of a series whose minutes end at `end`), oldest first."""
    count = math.ceil((end - start) / step - 1e-9)
    return [end - i * step for i in range(count - 1, -1, -1)]


def _burn_down(
    window: Series, first: float, start: float, end: float, allowed: float, points: int
) -> list[tuple[float, float]]:
    """Remaining budget (fraction of the whole window's allowance) at regular times from the
    window start to its end: 1 at the start, the reported `remaining` at the end. `first` is
    where `window`'s counts start (see `evaluate_slo`)."""
    out = [(start, 1.0)]
    for t in _sample_times(start, end, _step(end - start, points)):
        spent = window.sum_between(first, t)
        out.append((t, 1.0 - spent / allowed if allowed > 0 else 1.0))
    return out


def _burn_history(
    slo: SloDefinition, series: Series, start: float, end: float, points: int
) -> dict[str, list[tuple[float, float]]]:
    """Burn rate over each alert's long window, sampled over the last week of the window (or
    the whole window if shorter)."""
    span = min(end - start, 7 * 86400.0)
    step = _step(span, points)
    times = [end - span, *_sample_times(end - span, end, step)]
    if not series.is_boundary(times[0]):
        times = times[1:]
    out: dict[str, list[tuple[float, float]]] = {}
    for label in dict.fromkeys(rule.long for rule in slo.alerts):
        width = parse_duration(label)
        out[label] = [(t, _burn(series, t - width, t, slo.budget)[0]) for t in times]
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

    `at` defaults to the end of the minute holding the newest log entry. Raises
    FileNotFoundError / ValueError for paths that hold no logs; malformed lines never raise:
    they are counted and written to `quarantine_path` (created only if there is one).
    """
    files = find_log_files(paths)
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    counters = [counter_for(s) for s in spec.slos]
    if at is not None and at.timestamp() % MINUTE:
        # A calendar window starts at midnight, inside one of the minutes ending at `at`.
        counters += [
            _since_start(counter, slo, at)
            for slo, counter in zip(spec.slos, list(counters), strict=True)
            if slo.window.calendar is not None
        ]
    with Quarantine(quarantine_path) as quarantine:
        scan = scan_alb(files, counters, quarantine=quarantine, at=at)
    if at is not None:
        moment: float | None = at.timestamp()
    elif scan.source.last is not None:
        moment = math.ceil(scan.source.last / MINUTE) * MINUTE
    else:
        moment = None
    results = []
    if moment is not None:
        for slo in spec.slos:
            results.append(
                evaluate_slo(
                    slo,
                    scan.series[slo.name],
                    moment,
                    points=points,
                    since_start=scan.series.get(_since_name(slo)),
                )
            )
    return SloReport(spec=spec, at=moment, source=scan.source, results=results)


def _since_name(slo: SloDefinition) -> str:
    return f"{slo.name}@since-start"  # '@' is never in an SLO's name


def _since_start(counter: Counter, slo: SloDefinition, at: datetime) -> Counter:
    start = datetime.fromtimestamp(_window_bounds(slo, at.timestamp())[0], UTC)
    return Counter(
        name=_since_name(slo), where=f"({counter.where}) AND t > {sql_time(start)}", bad=counter.bad
    )
