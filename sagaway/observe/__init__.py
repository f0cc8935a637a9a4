"""Observability: time series, metrics, alarms and SLOs."""

from sagaway.observe.series import Bucket, Series, parse_statistic, percentile

__all__ = ["Bucket", "Series", "parse_statistic", "percentile"]
