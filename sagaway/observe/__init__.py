"""Observability: time series, metrics, alarms and SLOs."""

from sagaway.observe.alarms import AlarmDefinitionError, AlarmState, MetricAlarm
from sagaway.observe.composite import AlarmSet, AlarmSource, CompositeAlarm, RuleSyntaxError
from sagaway.observe.filters import FilterPattern, FilterPatternError, MetricFilter
from sagaway.observe.series import Bucket, Series, parse_statistic, percentile

__all__ = [
    "AlarmDefinitionError",
    "AlarmSet",
    "AlarmSource",
    "AlarmState",
    "Bucket",
    "CompositeAlarm",
    "FilterPattern",
    "FilterPatternError",
    "MetricAlarm",
    "MetricFilter",
    "RuleSyntaxError",
    "Series",
    "parse_statistic",
    "percentile",
]
