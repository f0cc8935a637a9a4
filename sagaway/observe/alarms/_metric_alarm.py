"""Metric alarms with CloudWatch's semantics: threshold, M out of N, missing-data treatment.

```python
alarm = MetricAlarm("checkout-5xx", threshold=5, evaluation_periods=3, datapoints_to_alarm=2,
                    treat_missing="notBreaching")
alarm.evaluate([0, None, 7, 9])          # oldest -> newest, None = no data -> AlarmState.ALARM
```

`evaluate` follows "How alarm state is evaluated when data is missing" in CloudWatch's user
guide; docs/alarms.md gives the rules and the documented examples they reproduce.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sagaway.errors import ObserveError
from sagaway.observe.metrics._series import parse_statistic

__all__ = ["COMPARISONS", "TREAT_MISSING", "AlarmDefinitionError", "AlarmState", "MetricAlarm"]


class AlarmState(StrEnum):
    """The state of an alarm; its value is CloudWatch's spelling."""

    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class AlarmDefinitionError(ObserveError, ValueError):
    """An alarm, composite or rule that cannot be defined as written; the message says why."""


# Comparison operators, with CloudWatch's ComparisonOperator names accepted as aliases.
COMPARISONS: dict[str, str] = {
    ">=": ">=",
    ">": ">",
    "<": "<",
    "<=": "<=",
    "GreaterThanOrEqualToThreshold": ">=",
    "GreaterThanThreshold": ">",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<": operator.lt,
    "<=": operator.le,
}
TREAT_MISSING = ("missing", "ignore", "breaching", "notBreaching")


@dataclass(frozen=True)
class MetricAlarm:
    """A threshold alarm over one metric, evaluated per period like a CloudWatch alarm.

    A datapoint *breaches* when `value <comparison> threshold`. The alarm looks at the most
    recent `evaluation_periods` (N) datapoints and is in ALARM when at least
    `datapoints_to_alarm` (M, default N) of them breach. `treat_missing` decides what missing
    datapoints mean when fewer than N are present: "missing" (default), "ignore",
    "breaching" or "notBreaching". `period` (seconds) and `statistic` say how a metric's
    observations become datapoints; `metric` names the metric (e.g. a metric filter).
    `evaluation_range` is how many periods the caller should pass to `evaluate` (CloudWatch
    looks further back than N; default N + 2, as in its documented examples).

    Raises AlarmDefinitionError for an invalid combination (such as M > N).
    """

    name: str
    threshold: float
    comparison: str = ">="
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None
    treat_missing: str = "missing"
    period: float = 60.0
    statistic: str = "sum"
    metric: str | None = None
    evaluation_range: int | None = None
    description: str = ""
    _compare: Callable[[float, float], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"alarm {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise AlarmDefinitionError("an alarm needs a non-empty name")
        if self.comparison not in COMPARISONS:
            raise AlarmDefinitionError(
                f"{where}: comparison {self.comparison!r} is not one of >=, >, <, <= "
                "(or CloudWatch's GreaterThanOrEqualToThreshold, ...)"
            )
        object.__setattr__(self, "comparison", COMPARISONS[self.comparison])
        object.__setattr__(self, "_compare", _COMPARE[self.comparison])
        try:
            threshold = float(self.threshold)
        except (TypeError, ValueError):
            raise AlarmDefinitionError(
                f"{where}: threshold must be a number, got {self.threshold!r}"
            ) from None
        if not math.isfinite(threshold):
            raise AlarmDefinitionError(f"{where}: threshold must be finite, got {threshold}")
        object.__setattr__(self, "threshold", threshold)
        n = self.evaluation_periods
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise AlarmDefinitionError(
                f"{where}: evaluation_periods (N) must be an integer >= 1, got {n!r}"
            )
        m = n if self.datapoints_to_alarm is None else self.datapoints_to_alarm
        if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= n:
            raise AlarmDefinitionError(
                f"{where}: datapoints_to_alarm (M) must be an integer with 1 <= M <= N "
                f"(evaluation_periods = {n}), got {self.datapoints_to_alarm!r}"
            )
        object.__setattr__(self, "datapoints_to_alarm", m)
        if self.treat_missing not in TREAT_MISSING:
            raise AlarmDefinitionError(
                f"{where}: treat_missing {self.treat_missing!r} is not one of "
                f"{', '.join(TREAT_MISSING)}"
            )
        if not isinstance(self.period, int | float) or self.period <= 0:
            raise AlarmDefinitionError(f"{where}: period must be positive seconds")
        try:
            object.__setattr__(self, "statistic", parse_statistic(self.statistic))
        except ValueError as exc:
            raise AlarmDefinitionError(f"{where}: {exc}") from None
        span = n + 2 if self.evaluation_range is None else self.evaluation_range
        if not isinstance(span, int) or span < n:
            raise AlarmDefinitionError(
                f"{where}: evaluation_range must be an integer >= evaluation_periods ({n})"
            )
        object.__setattr__(self, "evaluation_range", span)

    def breaches(self, value: float) -> bool:
        """Whether one datapoint is on the wrong side of the threshold."""
        return self._compare(value, self.threshold)

    def evaluate(
        self, datapoints: Sequence[float | None], previous: AlarmState = AlarmState.OK
    ) -> AlarmState:
        """The state for `datapoints` (oldest first, None for a missing period).

        The datapoints given are the evaluation range. With at least N present, the N most
        recent present ones decide (missing ones are skipped). With fewer, the gaps are
        filled per `treat_missing`; "ignore" keeps `previous` where data cannot decide.
        """
        n, m = self.evaluation_periods, self.datapoints_to_alarm
        assert m is not None
        present = [(age, v) for age, v in enumerate(reversed(datapoints), 1) if v is not None]
        if len(present) >= n:
            breaching = sum(1 for _, v in present[:n] if self.breaches(v))
            return AlarmState.ALARM if breaching >= m else AlarmState.OK
        breaching = sum(1 for _, v in present if self.breaches(v))
        fill = n - len(present)
        if self.treat_missing == "breaching":
            return AlarmState.ALARM if breaching + fill >= m else AlarmState.OK
        if self.treat_missing == "notBreaching":
            return AlarmState.ALARM if breaching >= m else AlarmState.OK
        # "missing" and "ignore": the missing datapoints count neither way.
        ignore = self.treat_missing == "ignore"
        if not present:
            return previous if ignore else AlarmState.INSUFFICIENT_DATA
        if breaching >= m:
            return AlarmState.ALARM
        if breaching < len(present):
            return AlarmState.OK  # a present, non-breaching datapoint decides
        if ignore:
            return previous
        # Only breaching datapoints, fewer than M: CloudWatch goes to ALARM once the oldest
        # of them is at least M periods old (nothing has contradicted it since).
        oldest = max(age for age, _ in present)
        return AlarmState.ALARM if oldest >= m else AlarmState.INSUFFICIENT_DATA

    def describe(self) -> str:
        """One line: `sum >= 5 for 2 of 3 periods of 60s (missing: notBreaching)`."""
        return (
            f"{self.statistic} {self.comparison} {self.threshold:g} for "
            f"{self.datapoints_to_alarm} of {self.evaluation_periods} periods of "
            f"{self.period:g}s (missing data: {self.treat_missing})"
        )
