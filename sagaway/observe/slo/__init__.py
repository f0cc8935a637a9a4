"""SLOs from load balancer access logs. A specification (`load_slo_spec`) declares objectives,
windows, indicators and alerts; ALB access logs are read (`parse_line` for one line, `scan_alb`
for many files at once with DuckDB, malformed lines set aside in a `Quarantine`) into
per-minute request counts; `evaluate_slo` and `report_from_alb` turn them into SLIs, error
budgets, burn rates and multi-window alerts over windows (at - w, at], written as JSON, a table
or an HTML page; `prometheus_rules` gives the same alerts to Prometheus, and `SloAlerts` offers
them to composite alarms as `slo:<name>:<severity>` sources.
"""

from sagaway.observe._time import parse_duration
from sagaway.observe.slo._alarms import SLO_PREFIX, SloAlerts, SloAlertSource, slo_alert_name
from sagaway.observe.slo._alb import (
    FIELDS,
    RULES,
    AlbEntry,
    MalformedLine,
    Quarantine,
    find_log_files,
    parse_line,
)
from sagaway.observe.slo._alb_scan import (
    COLUMNS,
    AlbScan,
    Counter,
    SourceStats,
    request_filter,
    scan_alb,
)
from sagaway.observe.slo._burn_rates import (
    BURN_WINDOWS,
    AlertState,
    ErrorBudget,
    SloReport,
    SloResult,
    counter_for,
    evaluate_slo,
    report_from_alb,
)
from sagaway.observe.slo._html import report_html
from sagaway.observe.slo._report import report_json, report_table
from sagaway.observe.slo._rules import PROMETHEUS_DEFAULTS, prometheus_rules
from sagaway.observe.slo._spec import (
    DEFAULT_ALERTS,
    AlertRule,
    Filter,
    Indicator,
    SloDefinition,
    SloSpec,
    SloSpecError,
    Window,
    load_slo_spec,
    parse_slo_spec,
)

__all__ = [
    "BURN_WINDOWS",
    "COLUMNS",
    "DEFAULT_ALERTS",
    "FIELDS",
    "PROMETHEUS_DEFAULTS",
    "RULES",
    "SLO_PREFIX",
    "AlbEntry",
    "AlbScan",
    "AlertRule",
    "AlertState",
    "Counter",
    "ErrorBudget",
    "Filter",
    "Indicator",
    "MalformedLine",
    "Quarantine",
    "SloAlertSource",
    "SloAlerts",
    "SloDefinition",
    "SloReport",
    "SloResult",
    "SloSpec",
    "SloSpecError",
    "SourceStats",
    "Window",
    "counter_for",
    "evaluate_slo",
    "find_log_files",
    "load_slo_spec",
    "parse_duration",
    "parse_line",
    "parse_slo_spec",
    "prometheus_rules",
    "report_from_alb",
    "report_html",
    "report_json",
    "report_table",
    "request_filter",
    "scan_alb",
    "slo_alert_name",
]
