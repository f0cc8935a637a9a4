"""Observability: time series, engine metrics, log filters, alarms, and SLOs from load
balancer access logs."""

from sagaway.observe.alarms import AlarmDefinitionError, AlarmState, MetricAlarm
from sagaway.observe.alb import AlbEntry, MalformedLine, Quarantine, find_log_files, parse_line
from sagaway.observe.alb_scan import AlbScan, Counter, SourceStats, scan_alb
from sagaway.observe.composite import AlarmSet, AlarmSource, CompositeAlarm, RuleSyntaxError
from sagaway.observe.engine_alarms import EngineMetricReader, EngineMetricRef
from sagaway.observe.filters import FilterPattern, FilterPatternError, MetricFilter
from sagaway.observe.series import Bucket, Series, parse_statistic, percentile
from sagaway.observe.slo import (
    AlertState,
    ErrorBudget,
    SloReport,
    SloResult,
    evaluate_slo,
    report_from_alb,
)
from sagaway.observe.slo_alarms import SloAlerts, SloAlertSource
from sagaway.observe.slo_spec import SloDefinition, SloSpec, SloSpecError, load_slo_spec

__all__ = [
    "AlarmDefinitionError",
    "AlarmSet",
    "AlarmSource",
    "AlarmState",
    "AlbEntry",
    "AlbScan",
    "AlertState",
    "Bucket",
    "CompositeAlarm",
    "Counter",
    "EngineMetricReader",
    "EngineMetricRef",
    "ErrorBudget",
    "FilterPattern",
    "FilterPatternError",
    "MalformedLine",
    "MetricAlarm",
    "MetricFilter",
    "Quarantine",
    "RuleSyntaxError",
    "Series",
    "SloAlertSource",
    "SloAlerts",
    "SloDefinition",
    "SloReport",
    "SloResult",
    "SloSpec",
    "SloSpecError",
    "SourceStats",
    "evaluate_slo",
    "find_log_files",
    "load_slo_spec",
    "parse_line",
    "parse_statistic",
    "percentile",
    "report_from_alb",
    "scan_alb",
]
