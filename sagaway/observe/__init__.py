"""Observability: time series and engine metrics, log filters, alarms, and SLOs from load
balancer access logs, one subpackage each:

- `sagaway.observe.metrics`: `Series`, the one bucketing code, and the engine's metrics;
- `sagaway.observe.filters`: filter patterns and metric filters over log lines;
- `sagaway.observe.alarms`: metric and composite alarms, incidents, notifiers, the monitor,
  `alarms.yaml`;
- `sagaway.observe.slo`: SLO specifications, ALB log reading, reports, Prometheus rules and
  SLO alerts for composite alarms.

This package exports the names most programs need, and every exception class of the
subpackages; each is an `ObserveError` (a `sagaway.SagawayError`).
"""

from sagaway.errors import ObserveError
from sagaway.observe.alarms import (
    AlarmConfigurationError,
    AlarmDefinitionError,
    AlarmSet,
    AlarmSource,
    AlarmState,
    CompositeAlarm,
    DeliveryError,
    EngineMetricReader,
    EngineMetricReadError,
    EngineMetricRef,
    MetricAlarm,
    RuleSyntaxError,
)
from sagaway.observe.filters import FilterPattern, FilterPatternError, MetricFilter
from sagaway.observe.metrics import Bucket, Series, parse_statistic, percentile
from sagaway.observe.slo import (
    AlbEntry,
    AlbScan,
    AlertState,
    Counter,
    ErrorBudget,
    MalformedLine,
    Quarantine,
    SloAlerts,
    SloAlertSource,
    SloDefinition,
    SloReport,
    SloResult,
    SloSpec,
    SloSpecError,
    SourceStats,
    evaluate_slo,
    find_log_files,
    load_slo_spec,
    parse_line,
    report_from_alb,
    scan_alb,
)

__all__ = [
    "AlarmConfigurationError",
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
    "DeliveryError",
    "EngineMetricReadError",
    "EngineMetricReader",
    "EngineMetricRef",
    "ErrorBudget",
    "FilterPattern",
    "FilterPatternError",
    "MalformedLine",
    "MetricAlarm",
    "MetricFilter",
    "ObserveError",
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
