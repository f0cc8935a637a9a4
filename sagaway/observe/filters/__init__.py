"""Metric filters: log lines turned into metric values. A `FilterPattern` is written in
CloudWatch Logs' filter pattern syntax (terms, JSON selectors such as `{ $.status >= 500 }`,
space-delimited fields such as `[ip, user, ..., status = 5*]`), parsed once, and compiled into a
fast matcher that a plain reference implementation checks in the tests; a `MetricFilter` adds
the metric's name and value (a constant or a field of the line) for each line that matches.
"""

from sagaway.observe.filters._metric_filter import (
    FilterPattern,
    FilterPatternError,
    Match,
    MetricFilter,
)

__all__ = ["FilterPattern", "FilterPatternError", "Match", "MetricFilter"]
