"""Alarms: metric alarms with CloudWatch's evaluation rules (`MetricAlarm`, `AlarmState`),
composite alarms over other alarms and any `AlarmSource` such as an SLO alert, state monitoring
that turns evaluations into incidents and notifications (re-notify, flap damping), notifiers
(webhook, Slack, ticket, e-mail) behind a retrying `Dispatcher`, the `Monitor` that feeds them
log lines, engine metrics (`EngineMetricReader`), SLO alerts and gray-failure sources
(`GrayFailureSource`: callers' step metrics against a health `Probe`), the log input it reads
(`FileTail`, `TimestampReader`), and `load_config`, which builds all of it from `alarms.yaml`.
"""

from sagaway.observe._time import format_duration, iso_time
from sagaway.observe.alarms._composite import (
    AlarmSet,
    AlarmSource,
    CompositeAlarm,
    RuleSyntaxError,
)
from sagaway.observe.alarms._config import AlarmConfig, load_config, parse_config
from sagaway.observe.alarms._dispatch import DeliveryFailure, Dispatcher, redact
from sagaway.observe.alarms._engine_alarms import (
    ENGINE_LABELS,
    EngineMetricReader,
    EngineMetricReadError,
    EngineMetricRef,
)
from sagaway.observe.alarms._gray import GrayFailureSource, Probe, ProbeResult
from sagaway.observe.alarms._incident import IncidentTracker, Notification, NotifyPolicy
from sagaway.observe.alarms._logsource import FileTail, TimestampReader
from sagaway.observe.alarms._metric_alarm import (
    COMPARISONS,
    TREAT_MISSING,
    AlarmDefinitionError,
    AlarmState,
    MetricAlarm,
)
from sagaway.observe.alarms._monitor import LineStats, Monitor, Transition
from sagaway.observe.alarms._notify import (
    DeliveryError,
    EmailNotifier,
    Notifier,
    SlackNotifier,
    TicketNotifier,
    WebhookNotifier,
)
from sagaway.observe.alarms._yaml import AlarmConfigurationError

__all__ = [
    "COMPARISONS",
    "ENGINE_LABELS",
    "TREAT_MISSING",
    "AlarmConfig",
    "AlarmConfigurationError",
    "AlarmDefinitionError",
    "AlarmSet",
    "AlarmSource",
    "AlarmState",
    "CompositeAlarm",
    "DeliveryError",
    "DeliveryFailure",
    "Dispatcher",
    "EmailNotifier",
    "EngineMetricReadError",
    "EngineMetricReader",
    "EngineMetricRef",
    "FileTail",
    "GrayFailureSource",
    "IncidentTracker",
    "LineStats",
    "MetricAlarm",
    "Monitor",
    "Notification",
    "Notifier",
    "NotifyPolicy",
    "Probe",
    "ProbeResult",
    "RuleSyntaxError",
    "SlackNotifier",
    "TicketNotifier",
    "TimestampReader",
    "Transition",
    "WebhookNotifier",
    "format_duration",
    "iso_time",
    "load_config",
    "parse_config",
    "redact",
]
