"""Alarms on the engine's own metrics: which metric and labels an alarm reads, and reading them.

Every sagaway process keeps its measurements as per-minute buckets in the store (see
`sagaway.observe.metrics`). An alarm on them names a metric and, optionally, label values:

```python
ref = EngineMetricRef("runs_finished", {"saga": "checkout", "status": "compensated"})
reader = EngineMetricReader(store)                  # live: every call reads the store
reader.series(ref, period=300, since=now - 1500)    # a Series of 5-minute buckets
```

A minute in which nothing was recorded has no bucket: to an alarm it is a missing datapoint,
so "too many X" alarms want `treat_missing: notBreaching` and "too few X" alarms `breaching`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sagaway.errors import ObserveError
from sagaway.observe.metrics._engine import metric_series, parse_labels
from sagaway.observe.metrics._series import Series

__all__ = [
    "BUCKET_SECONDS",
    "ENGINE_LABELS",
    "GAUGES",
    "EngineMetricReadError",
    "EngineMetricReader",
    "EngineMetricRef",
]

BUCKET_SECONDS = 60  # the store keeps one bucket per metric, label set and minute

_FINISHED = ("succeeded", "compensated", "failed", "cancelled")
_BREAKER = ("closed", "open", "half_open", "forced_open", "disabled")

# Metric -> its labels, each with the values it can take (None: any text, e.g. a saga name).
ENGINE_LABELS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "runs_started": {"saga": None},
    "runs_finished": {"saga": None, "status": _FINISHED},
    "retries": {"saga": None, "step": None},
    "compensations": {"saga": None, "step": None},
    "escalations": {"saga": None, "step": None},
    "parked": {"saga": None, "step": None},
    "breaker_transitions": {"breaker": None, "old": _BREAKER, "new": _BREAKER},
    "step_seconds": {"saga": None, "step": None, "outcome": ("ok", "error")},
    "queue_depth": {},
    "queue_age_seconds": {},
    "flow_pending": {"saga": None, "key": None},
    "messages_handled": {"group": None, "outcome": ("ok", "error")},
    "messages_retried": {"group": None},
    "messages_dead": {"group": None},
    "group_depth": {"group": None, "topic": None},
    "group_lag_seconds": {"group": None, "topic": None},
}
# Sampled values rather than events: their count is the number of samples, rarely wanted.
GAUGES = frozenset(
    {"queue_depth", "queue_age_seconds", "flow_pending", "group_depth", "group_lag_seconds"}
)


class EngineMetricReadError(ObserveError, RuntimeError):
    """The store could not be read; the message says which metric and why."""


def _one_of(value: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}(one of {', '.join(known)})"


@dataclass(frozen=True)
class EngineMetricRef:
    """One engine metric, summed over the label sets whose labels have the values in `where`.

    Raises ValueError, naming the metric or label at fault and the accepted ones, for an
    unknown metric, a label the metric does not have, or a value a label cannot take (such
    as `status: compensating`, which no finished run has).
    """

    metric: str
    where: tuple[tuple[str, str], ...] = ()

    def __init__(self, metric: str, where: Mapping[str, str] | None = None) -> None:
        object.__setattr__(self, "metric", metric)
        object.__setattr__(self, "where", tuple(sorted((where or {}).items())))
        if metric not in ENGINE_LABELS:
            raise ValueError(
                f"unknown engine metric {metric!r}: {_one_of(metric, list(ENGINE_LABELS))}"
            )
        labels = ENGINE_LABELS[metric]
        for label, value in self.where:
            if label not in labels:
                if not labels:
                    raise ValueError(f"{metric} has no labels: remove 'where'")
                raise ValueError(f"{metric} has no label {label!r}: {_one_of(label, list(labels))}")
            if not isinstance(value, str) or not value:
                raise ValueError(f"label {label!r} needs a non-empty text value, got {value!r}")
            allowed = labels[label]
            if allowed is not None and value not in allowed:
                raise ValueError(
                    f"{metric} never has {label}={value!r}: {_one_of(value, list(allowed))}"
                )

    @property
    def labels(self) -> dict[str, str]:
        """`where` as a dict."""
        return dict(self.where)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a stored label set is one this reference sums."""
        return all(labels.get(k) == v for k, v in self.where)

    def describe(self) -> str:
        """`runs_finished{saga=checkout,status=compensated}`."""
        inside = ",".join(f"{k}={v}" for k, v in self.where)
        return f"{self.metric}{{{inside}}}" if inside else self.metric


class EngineMetricReader:
    """Reads engine metrics from a store as `Series` of an alarm's period.

    Live (default), each `read` asks the store once for every metric's buckets from the
    earliest `since` requested (a query on the minute index, so its cost follows the
    lookback, not the store's history); buckets that processes are still adding to are read
    again at the next evaluation, so late flushes are never lost. With `cache=True`
    (replaying the past), the first read of a (metric, labels, period) reads everything from
    its `since` on and later reads reuse it: the store is read once. Store failures raise
    `EngineMetricReadError`.
    """

    def __init__(self, store: Any, *, cache: bool = False) -> None:
        self.store = store
        self.cache = cache
        self._cached: dict[tuple[EngineMetricRef, float], Series] = {}

    def series(self, ref: EngineMetricRef, period: float, since: float) -> Series:
        """`ref` in buckets of `period` seconds (a multiple of 60) from `since` on."""
        return self.read([(ref, period, since)])[0]

    def read(self, requests: list[tuple[EngineMetricRef, float, float]]) -> list[Series]:
        """One `Series` per (ref, period, since) request, in order."""
        if self.cache:
            return [self._history(ref, period, since) for ref, period, since in requests]
        if not requests:
            return []
        first = min(int(since // BUCKET_SECONDS) for _, _, since in requests)
        names = ", ".join(dict.fromkeys(ref.metric for ref, _, _ in requests))
        rows = self._rows(None, first, f"{names} from the store")
        out = []
        for ref, period, since in requests:
            minutes = Series(BUCKET_SECONDS)
            start = int(since // BUCKET_SECONDS)
            for name, label, minute, count, total, low, high in rows:
                if name == ref.metric and minute >= start and ref.matches(parse_labels(label)):
                    minutes.merge(minute * BUCKET_SECONDS, count, total, low, high)
            out.append(minutes if period == BUCKET_SECONDS else minutes.resample(period))
        return out

    def _history(self, ref: EngineMetricRef, period: float, since: float) -> Series:
        key = (ref, float(period))
        if key not in self._cached:
            try:
                minutes = metric_series(self.store, ref.metric, ref.labels, since=since)
            except Exception as exc:
                raise EngineMetricReadError(
                    f"cannot read {ref.describe()} from the store: {exc}"
                ) from exc
            self._cached[key] = minutes if period == BUCKET_SECONDS else minutes.resample(period)
        return self._cached[key]

    def _rows(self, name: str | None, since_minute: int, what: str) -> list[tuple]:
        try:
            return self.store.metric_rows(name, since_minute)
        except Exception as exc:
            # Whatever the backend raises (locked, gone, unreachable): the caller turns it
            # into "cannot say" for this evaluation instead of a dead monitor.
            raise EngineMetricReadError(f"cannot read {what}: {exc}") from exc

    def span(self, metrics: list[str]) -> tuple[float | None, float | None]:
        """Start of the oldest and of the newest stored minute of any of `metrics` (any
        labels), or (None, None) when the store holds none."""
        starts: list[float] = []
        for name in dict.fromkeys(metrics):
            try:
                found = metric_series(self.store, name)
            except Exception as exc:
                raise EngineMetricReadError(f"cannot read {name} from the store: {exc}") from exc
            starts += [t for t in (found.first(), found.last()) if t is not None]
        return (min(starts), max(starts)) if starts else (None, None)

    def label_sets(self, metric: str) -> list[dict[str, str]]:
        """The distinct label sets stored for `metric` (to tell a `where` that matches none)."""
        rows = self._rows(metric, 0, f"{metric} from the store")
        return [parse_labels(text) for text in dict.fromkeys(row[1] for row in rows)]

    def unmatched(self, ref: EngineMetricRef) -> str | None:
        """None when some stored label set matches `ref`; else why not, with the values that
        are stored (a misspelt saga name would otherwise never alarm)."""
        stored = self.label_sets(ref.metric)
        if any(ref.matches(found) for found in stored):
            return None
        if not stored:
            return f"the store holds no {ref.metric} yet"
        for label, value in ref.where:
            values = sorted({found[label] for found in stored if label in found})
            if value not in values:
                return (
                    f"no stored {ref.metric} has {label}={value!r}; stored: "
                    f"{', '.join(values) or 'none'}"
                )
        return f"no stored {ref.metric} has all of {ref.describe()}"
