"""Fixed-period time series: the one bucketing code that metrics, alarms and SLOs share.

A `Series` keeps, per period (a bucket starting at `origin` plus a whole number of `period`
seconds; by default aligned to the epoch), the count, sum, minimum and maximum of the values
observed in it, and optionally the values themselves for percentiles. Buckets can be filled one
observation at a time (`add`) or from pre-aggregated rows (`merge`, e.g. from a DuckDB
`GROUP BY minute`). Range sums are answered from prefix sums in O(log n), so a burn-down over a
30-day window of one-minute buckets costs one pass, not one pass per point.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["STATISTICS", "Bucket", "Series", "parse_statistic", "percentile"]

# Statistic names, with CloudWatch's spellings accepted as aliases.
STATISTICS: dict[str, str] = {
    "sum": "sum",
    "avg": "avg",
    "average": "avg",
    "mean": "avg",
    "min": "min",
    "minimum": "min",
    "max": "max",
    "maximum": "max",
    "count": "count",
    "samplecount": "count",
}
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")
# A time within this fraction of a period from a boundary is taken as that boundary.
_ROUNDING = 1e-9


def parse_statistic(name: str) -> str:
    """Return the canonical name of a statistic (`sum`, `avg`, `min`, `max`, `count`, `pNN`).

    Raises ValueError naming the accepted spellings when `name` is not one of them.
    """
    key = name.strip().lower()
    if key in STATISTICS:
        return STATISTICS[key]
    match = _PERCENTILE.match(key)
    if match and 0 <= float(match.group(1)) <= 100:
        return key
    raise ValueError(
        f"unknown statistic {name!r}: use sum, avg, min, max, count "
        "or a percentile such as p50, p99, p99.9"
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values` (not empty) for `q` in [0, 100]."""
    ordered = sorted(values)
    if q <= 0:
        return ordered[0]
    rank = math.ceil(q / 100.0 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


@dataclass
class Bucket:
    """What one period saw: count, sum, min and max of its values (and the values, if kept)."""

    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    samples: list[float] | None = field(default=None, repr=False)

    def statistic(self, stat: str) -> float | None:
        """The value of a canonical statistic, or None when this bucket has no data for it."""
        if self.count == 0:
            return None
        if stat == "sum":
            return self.total
        if stat == "count":
            return float(self.count)
        if stat == "avg":
            return self.total / self.count
        if stat == "min":
            return self.minimum
        if stat == "max":
            return self.maximum
        if stat.startswith("p"):
            if not self.samples:
                raise ValueError(
                    f"statistic {stat} needs the individual values: "
                    "create the Series with keep_samples=True"
                )
            return percentile(self.samples, float(stat[1:]))
        raise ValueError(f"unknown statistic {stat!r}")


class Series:
    """Observations grouped into fixed periods of `period` seconds. Periods start at `origin`
    plus a whole number of periods: the epoch by default; `origin=at` makes `at` a boundary, so
    that windows ending at `at` are made of whole periods."""

    def __init__(self, period: float, *, keep_samples: bool = False, origin: float = 0.0) -> None:
        if period <= 0:
            raise ValueError(f"period must be positive seconds, got {period!r}")
        self.period = float(period)
        self.origin = float(origin) % self.period
        self.keep_samples = keep_samples
        self._buckets: dict[float, Bucket] = {}
        self._index: tuple[list[float], list[int], list[float]] | None = None

    def __len__(self) -> int:
        return len(self._buckets)

    def __iter__(self) -> Iterator[tuple[float, Bucket]]:
        """Buckets as (start, bucket), oldest first."""
        for start in sorted(self._buckets):
            yield start, self._buckets[start]

    def bucket_start(self, timestamp: float) -> float:
        """Start of the period containing `timestamp`."""
        return self._start(math.floor((timestamp - self.origin) / self.period))

    def _start(self, index: int) -> float:
        # Every period start is computed this one way, so equal starts compare equal.
        return self.origin + index * self.period

    def _boundary_at_or_after(self, timestamp: float) -> float:
        # Forgives the rounding of a time meant to be a boundary (at - 30d, say).
        return self._start(math.ceil((timestamp - self.origin) / self.period - _ROUNDING))

    def is_boundary(self, timestamp: float) -> bool:
        """Whether a period starts at `timestamp` (up to float rounding)."""
        periods = (timestamp - self.origin) / self.period
        return abs(periods - round(periods)) <= _ROUNDING

    def _bucket(self, timestamp: float) -> Bucket:
        start = self.bucket_start(timestamp)
        bucket = self._buckets.get(start)
        if bucket is None:
            bucket = self._buckets[start] = Bucket(samples=[] if self.keep_samples else None)
            self._index = None
        return bucket

    def add(self, timestamp: float, value: float = 1.0) -> None:
        """Record one observation of `value` at `timestamp` (seconds since the epoch)."""
        bucket = self._bucket(timestamp)
        bucket.count += 1
        bucket.total += value
        if value < bucket.minimum:
            bucket.minimum = value
        if value > bucket.maximum:
            bucket.maximum = value
        if bucket.samples is not None:
            bucket.samples.append(value)
        self._index = None

    def merge(
        self,
        timestamp: float,
        count: int,
        total: float,
        minimum: float | None = None,
        maximum: float | None = None,
        samples: Iterable[float] | None = None,
    ) -> None:
        """Fold a pre-aggregated group of `count` observations summing to `total` into the
        period containing `timestamp`."""
        if count <= 0:
            return
        bucket = self._bucket(timestamp)
        bucket.count += int(count)
        bucket.total += total
        if minimum is not None:
            bucket.minimum = min(bucket.minimum, minimum)
        if maximum is not None:
            bucket.maximum = max(bucket.maximum, maximum)
        if bucket.samples is not None and samples is not None:
            bucket.samples.extend(samples)
        self._index = None

    def resample(self, period: float) -> Series:
        """A new series with longer periods of `period` seconds, a whole multiple of this one's:
        each of its buckets folds the count, sum, minimum, maximum (and samples) of the buckets
        of this series that start in it, so every statistic but a percentile stays exact.

        Raises ValueError when `period` is not a whole multiple of this series' period.
        """
        ratio = period / self.period
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(
                f"cannot resample periods of {self.period:g}s into {period:g}s: "
                "the new period must be a whole multiple of the old one"
            )
        out = Series(period, keep_samples=self.keep_samples, origin=self.origin)
        for start, bucket in self:
            out.merge(
                start, bucket.count, bucket.total, bucket.minimum, bucket.maximum, bucket.samples
            )
        return out

    def drop_before(self, timestamp: float) -> int:
        """Forget the buckets of periods that start before `timestamp`; return how many."""
        old = [start for start in self._buckets if start < timestamp]
        for start in old:
            del self._buckets[start]
        if old:
            self._index = None
        return len(old)

    def get(self, timestamp: float) -> Bucket | None:
        """The bucket of the period containing `timestamp`, or None if nothing was seen."""
        return self._buckets.get(self.bucket_start(timestamp))

    def first(self) -> float | None:
        """Start of the oldest bucket, or None when empty."""
        return min(self._buckets) if self._buckets else None

    def last(self) -> float | None:
        """Start of the newest bucket, or None when empty."""
        return max(self._buckets) if self._buckets else None

    def datapoints(self, end: float, periods: int, stat: str = "sum") -> list[float | None]:
        """The statistic of the `periods` whole periods before `end`, oldest first.

        `end` is rounded down to a period boundary; a period with no observations gives None
        (a missing datapoint, in alarm terms).
        """
        stat = parse_statistic(stat)
        stop = self.bucket_start(end)
        points: list[float | None] = []
        for i in range(periods, 0, -1):
            bucket = self._buckets.get(stop - i * self.period)
            points.append(None if bucket is None else bucket.statistic(stat))
        return points

    def _prefix(self) -> tuple[list[float], list[int], list[float]]:
        if self._index is None:
            starts = sorted(self._buckets)
            counts, totals = [0], [0.0]
            for start in starts:
                bucket = self._buckets[start]
                counts.append(counts[-1] + bucket.count)
                totals.append(totals[-1] + bucket.total)
            self._index = (starts, counts, totals)
        return self._index

    def _span(self, start: float, end: float) -> tuple[int, int]:
        starts = self._prefix()[0]
        first, stop = self._boundary_at_or_after(start), self._boundary_at_or_after(end)
        return bisect_left(starts, first), bisect_left(starts, stop)

    def sum_between(self, start: float, end: float) -> float:
        """Sum of the values of buckets starting in [start, end)."""
        lo, hi = self._span(start, end)
        totals = self._prefix()[2]
        return totals[hi] - totals[lo]

    def count_between(self, start: float, end: float) -> int:
        """Number of observations in buckets starting in [start, end)."""
        lo, hi = self._span(start, end)
        counts = self._prefix()[1]
        return counts[hi] - counts[lo]
