"""Time series and the engine's metrics. `Series` is the one fixed-period bucketing code that
engine metrics, log-filter alarms and SLO burn rates share: per period the count, sum, minimum,
maximum (and, if asked, the values), with range sums from prefix sums. `metric_series` and
`StoreCollector` read back the per-minute buckets every sagaway process adds to the store, as
`Series` and as Prometheus metrics summed over every process; `serve_metrics` serves the latter.
"""

from sagaway.observe.metrics._engine import (
    ENGINE_METRICS,
    StoreCollector,
    engine_statistic,
    metric_series,
    parse_labels,
    serve_metrics,
)
from sagaway.observe.metrics._series import (
    STATISTICS,
    Bucket,
    Series,
    parse_statistic,
    percentile,
)

__all__ = [
    "ENGINE_METRICS",
    "STATISTICS",
    "Bucket",
    "Series",
    "StoreCollector",
    "engine_statistic",
    "metric_series",
    "parse_labels",
    "parse_statistic",
    "percentile",
    "serve_metrics",
]
