import math

import pytest

from sagaway.observe.metrics import Series, parse_statistic, percentile


def test_buckets_align_to_period_and_keep_count_sum_min_max():
    s = Series(60)
    s.add(120.5, 3)
    s.add(179.9, 1)
    s.add(180.0, 7)
    b = s.get(150)
    assert (b.count, b.total, b.minimum, b.maximum) == (2, 4.0, 1.0, 3.0)
    assert s.get(180).count == 1
    assert s.first() == 120 and s.last() == 180


def test_datapoints_are_oldest_first_with_none_for_missing_periods():
    s = Series(60)
    s.add(0, 1)
    s.add(130, 5)
    assert s.datapoints(end=180, periods=3, stat="sum") == [1.0, None, 5.0]
    assert s.datapoints(end=200, periods=2, stat="SampleCount") == [None, 1.0]


def test_range_sums_use_prefix_sums_and_follow_later_adds():
    s = Series(60)
    for minute in range(10):
        s.add(minute * 60, minute)
    assert s.sum_between(120, 300) == 2 + 3 + 4
    assert s.count_between(0, 600) == 10
    s.add(150, 100)
    assert s.sum_between(120, 300) == 109


def test_an_origin_moves_the_period_boundaries_and_range_sums_follow_them():
    at = 1_795_176_030.25  # 30.25 s past a whole minute
    s = Series(60, origin=at)
    assert s.origin == pytest.approx(30.25)
    s.add(at - 0.5, 1)  # period [at - 60, at)
    s.add(at, 10)  # period [at, at + 60)
    s.add(at - 60.5, 100)  # period [at - 120, at - 60)
    assert s.bucket_start(at - 0.5) == at - 60 and s.is_boundary(at - 3600)
    assert not s.is_boundary(at - 30.25)
    assert s.sum_between(at - 60, at) == 1 and s.sum_between(at - 120, at + 60) == 111
    # A bound a rounding away from a boundary is that boundary.
    assert s.sum_between(at - 60 + 1e-7, at - 1e-7) == 1
    assert s.resample(120).origin == pytest.approx(at % 120)


def test_percentiles_need_samples_and_use_nearest_rank():
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile(list(range(1, 101)), 99) == 99
    s = Series(60)
    s.add(0, 1)
    with pytest.raises(ValueError, match="keep_samples=True"):
        s.datapoints(60, 1, "p99")
    k = Series(60, keep_samples=True)
    for v in range(1, 11):
        k.add(0, v)
    assert k.datapoints(60, 1, "p90") == [9]


def test_unknown_statistic_names_the_accepted_ones():
    assert parse_statistic("Average") == "avg"
    with pytest.raises(ValueError, match="use sum, avg"):
        parse_statistic("median")


def test_merge_folds_preaggregated_rows():
    s = Series(60)
    s.merge(60, count=10, total=2.5, minimum=0.1, maximum=0.9)
    s.merge(61, count=0, total=99)
    b = s.get(60)
    assert (b.count, b.total, b.minimum, b.maximum) == (10, 2.5, 0.1, 0.9)
    assert math.isclose(s.datapoints(120, 1, "avg")[0], 0.25)


def test_drop_before_forgets_old_periods_only():
    s = Series(60)
    for minute in range(5):
        s.add(minute * 60 + 1, 1)
    assert s.drop_before(120) == 2
    assert s.first() == 120 and len(s) == 3
    assert s.sum_between(0, 600) == 3
    assert s.drop_before(0) == 0


def test_resample_folds_short_periods_into_longer_ones_exactly():
    s = Series(60, keep_samples=True)
    for minute, value in [(0, 4.0), (1, 1.0), (1, 9.0), (5, 2.0), (7, 6.0)]:
        s.add(minute * 60 + 5, value)
    five = s.resample(300)
    assert five.period == 300 and [start for start, _ in five] == [0, 300]
    first = five.get(0)
    assert (first.count, first.total, first.minimum, first.maximum) == (3, 14.0, 1.0, 9.0)
    assert sorted(first.samples) == [1.0, 4.0, 9.0]
    assert five.datapoints(end=600, periods=2, stat="max") == [9.0, 6.0]
    assert s.get(0).count == 1  # the original is unchanged
    with pytest.raises(ValueError, match="whole multiple"):
        s.resample(90)
    with pytest.raises(ValueError, match="whole multiple"):
        s.resample(30)
