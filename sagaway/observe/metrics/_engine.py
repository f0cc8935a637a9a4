"""The engine's metrics, read from the store: as time series, and in Prometheus text format.

Every process running sagaway (workers, and processes that only start runs) adds what it
measured to per-minute buckets in the store (see `sagaway.engine.metrics.MinuteRecorder`).
Here they are read back: `metric_series` gives one `Series` per metric for charts and
alarms, and `StoreCollector` exposes the totals and the live gauges to Prometheus, so one
`sagaway metrics serve` covers every worker of a store.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from sagaway.engine.metrics import LATENCY_BUCKETS
from sagaway.observe.metrics._series import Series, parse_statistic

__all__ = [
    "ENGINE_METRICS",
    "StoreCollector",
    "engine_statistic",
    "metric_series",
    "parse_labels",
    "serve_metrics",
]

# Stored name -> (Prometheus name, kind, help).
ENGINE_METRICS: dict[str, tuple[str, str, str]] = {
    "runs_started": ("sagaway_runs_started", "counter", "Runs created, per saga."),
    "runs_finished": ("sagaway_runs_finished", "counter", "Runs ended, per saga and status."),
    "retries": ("sagaway_retries", "counter", "Failed tries that will be tried again."),
    "compensations": ("sagaway_compensations", "counter", "Compensations completed."),
    "escalations": ("sagaway_escalations", "counter", "Runs that need a person."),
    "parked": ("sagaway_parked", "counter", "Steps parked by a breaker, limit or bulkhead."),
    "breaker_transitions": (
        "sagaway_breaker_transitions",
        "counter",
        "Circuit breaker state changes.",
    ),
    "step_seconds": ("sagaway_step_seconds", "histogram", "Duration of step tries."),
    "queue_depth": ("sagaway_queue_depth", "gauge", "Runs due for a worker now."),
    "queue_age_seconds": (
        "sagaway_queue_age_seconds",
        "gauge",
        "How long the oldest due run has waited for a worker.",
    ),
    "flow_pending": (
        "sagaway_flow_pending",
        "gauge",
        "Runs waiting for a slot of their key's concurrency limit, per saga and key.",
    ),
    "messages_handled": (
        "sagaway_messages_handled",
        "counter",
        "Tries of consumer handlers, per group and outcome.",
    ),
    "messages_retried": (
        "sagaway_messages_retried",
        "counter",
        "Messages handed to their group again after a failed try.",
    ),
    "messages_dead": (
        "sagaway_messages_dead",
        "counter",
        "Messages moved to their group's dead letters.",
    ),
    "group_depth": ("sagaway_group_depth", "gauge", "Messages a group has yet to handle."),
    "group_lag_seconds": (
        "sagaway_group_lag_seconds",
        "gauge",
        "Age of the oldest message a group has yet to handle.",
    ),
}


def engine_statistic(name: str) -> str:
    """`parse_statistic(name)` for engine metrics, which also refuses percentiles: the
    store's one-minute buckets hold count, sum, min and max, not each value."""
    stat = parse_statistic(name)
    if stat.startswith("p"):
        raise ValueError(
            f"statistic {name}: engine metrics keep count, sum, min and max per minute, not "
            "each value, so percentiles cannot be computed; use count, sum, avg, min or max"
        )
    return stat


def parse_labels(text: str) -> dict[str, str]:
    """`saga=checkout,step=charge` as a dict."""
    if not text:
        return {}
    return dict(pair.split("=", 1) for pair in text.split(","))


def metric_series(
    store: Any,
    name: str,
    where: Mapping[str, str] | None = None,
    since: float | None = None,
) -> Series:
    """One engine metric as a per-minute `Series`, summed over the label sets matching
    `where` (all when None), from `since` (epoch seconds; default: everything stored).

    Each bucket's count, sum, min and max are those of the observations of the minute
    (for `runs_finished` the values are run durations, for `step_seconds` try durations,
    for counters 1 per event, for gauges the sampled values).
    """
    if name not in ENGINE_METRICS and name != "step_seconds_le":
        raise ValueError(
            f"unknown engine metric {name!r}: use one of {', '.join(sorted(ENGINE_METRICS))}"
        )
    since_minute = 0 if since is None else int(since // 60)
    series = Series(60)
    for _name, label, minute, count, total, low, high in store.metric_rows(name, since_minute):
        found = parse_labels(label)
        if where and any(found.get(k) != v for k, v in where.items()):
            continue
        series.merge(minute * 60, count, total, low, high)
    return series


class StoreCollector:
    """A prometheus-client collector reading the engine's metrics from a store at each
    scrape: counters and histograms summed over every process's buckets, gauges live."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        """Yield the metric families (called by prometheus-client at each scrape)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        totals: dict[str, list[tuple[dict[str, str], int, float]]] = defaultdict(list)
        for name, label, count, total in self.store.metric_totals():
            totals[name].append((parse_labels(label), count, total))
        for name, (metric, kind, text) in ENGINE_METRICS.items():
            if kind != "counter":
                continue
            rows = totals.get(name, [])
            keys = sorted({k for found, _, _ in rows for k in found})
            family = CounterMetricFamily(metric, text, labels=keys)
            for found, count, _ in rows:
                family.add_metric([found.get(k, "") for k in keys], count)
            yield family
        yield self._step_histogram(totals, HistogramMetricFamily)
        runs = GaugeMetricFamily("sagaway_runs", "Runs per status.", labels=["status"])
        for status, count in sorted(self.store.count_runs().items()):
            runs.add_metric([status], count)
        yield runs
        now = time.time()
        depth, oldest = self.store.queue_stats(now)
        _, _, text = ENGINE_METRICS["queue_depth"]
        yield GaugeMetricFamily("sagaway_queue_depth", text, value=depth)
        _, _, text = ENGINE_METRICS["queue_age_seconds"]
        age = 0.0 if oldest is None else max(0.0, now - oldest)
        yield GaugeMetricFamily("sagaway_queue_age_seconds", text, value=age)
        yield from self._group_gauges(now, GaugeMetricFamily)
        metric, _, text = ENGINE_METRICS["flow_pending"]
        pending = GaugeMetricFamily(metric, text, labels=["saga", "key"])
        for queue in self.store.flow_queues():
            pending.add_metric([queue.saga, queue.key], queue.queued)
        yield pending

    def _group_gauges(self, now: float, family: Any) -> Iterator[Any]:
        """Depth and lag of every consumer group, live from the store."""
        groups = self.store.groups()
        metric, _, text = ENGINE_METRICS["group_depth"]
        depth = family(metric, text, labels=["group", "topic"])
        metric, _, text = ENGINE_METRICS["group_lag_seconds"]
        lag = family(metric, text, labels=["group", "topic"])
        for g in groups:
            depth.add_metric([g.group, g.topic], g.ready)
            age = 0.0 if g.oldest_ready is None else max(0.0, now - g.oldest_ready)
            lag.add_metric([g.group, g.topic], age)
        yield depth
        yield lag

    @staticmethod
    def _step_histogram(totals: Mapping[str, list], family: Any) -> Any:
        metric, _, text = ENGINE_METRICS["step_seconds"]
        histogram = family(metric, text, labels=["saga", "step"])
        counts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for found, count, _ in totals.get("step_seconds_le", []):
            counts[(found["saga"], found["step"])][found["le"]] = count
        sums: dict[tuple[str, str], float] = defaultdict(float)
        for found, _, total in totals.get("step_seconds", []):
            sums[(found["saga"], found["step"])] += total
        for key, per_bound in sorted(counts.items()):
            cumulative, buckets = 0, []
            for bound in [*map(str, LATENCY_BUCKETS), "+Inf"]:
                cumulative += per_bound.get(bound, 0)
                buckets.append((bound, cumulative))
            histogram.add_metric(list(key), buckets, sums[key])
        return histogram


def serve_metrics(store: Any, host: str = "127.0.0.1", port: int = 9464) -> Any:
    """Serve `/metrics` for the store's engine metrics on a background thread; returns the
    HTTP server (call `.shutdown()` to stop it)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))  # type: ignore[arg-type]
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
