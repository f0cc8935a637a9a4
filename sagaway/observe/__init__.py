"""Observability: time series, metrics, alarms and SLOs."""

from sagaway.observe.series import Bucket, Series, parse_statistic, percentile

__all__ = ["Bucket", "Series", "parse_statistic", "percentile"]

# SLOs and error budgets from load balancer access logs.
from sagaway.observe.alb import (
    AlbEntry,
    MalformedLine,
    Quarantine,
    find_log_files,
    parse_line,
)
from sagaway.observe.alb_scan import AlbScan, Counter, SourceStats, scan_alb
from sagaway.observe.slo import (
    AlertState,
    ErrorBudget,
    SloReport,
    SloResult,
    evaluate_slo,
    report_from_alb,
)
from sagaway.observe.slo_spec import (
    SloDefinition,
    SloSpec,
    SloSpecError,
    load_slo_spec,
)

__all__ += [
    "AlbEntry",
    "AlbScan",
    "AlertState",
    "Counter",
    "ErrorBudget",
    "MalformedLine",
    "Quarantine",
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
    "report_from_alb",
    "scan_alb",
]
