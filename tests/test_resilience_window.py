"""Sliding windows: running counts always equal a naive recount of the calls in the window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagaway.resilience import CountWindow, TimeWindow
from sagaway.resilience.window import FAILED, SLOW

codes = st.integers(min_value=0, max_value=FAILED | SLOW)


def naive_exceeded(window: list[int], min_calls: int, failure_rate: float, slow_rate: float):
    calls = len(window)
    if calls < min_calls or calls == 0:
        return False
    failures = sum(1 for c in window if c & FAILED)
    slow = sum(1 for c in window if c & SLOW)
    return failures / calls >= failure_rate or slow / calls >= slow_rate


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=12),
    min_calls=st.integers(min_value=1, max_value=12),
    failure_rate=st.sampled_from([0.1, 0.25, 0.3, 0.5, 0.7, 1.0]),
    slow_rate=st.sampled_from([0.2, 0.5, 1.0]),
    outcomes=st.lists(codes, max_size=60),
)
def test_count_window_matches_the_last_n_calls(size, min_calls, failure_rate, slow_rate, outcomes):
    """Counts always equal a recount; the threshold answer matches until the window trips."""
    window = CountWindow(size).build(min(min_calls, size), failure_rate, slow_rate)
    seen: list[int] = []
    for code in outcomes:
        exceeded = window.record(code, 0.0)
        seen.append(code)
        last = seen[-size:]
        counts = window.counts(0.0)
        assert counts.calls == len(last)
        assert counts.failures == sum(1 for c in last if c & FAILED)
        assert counts.slow == sum(1 for c in last if c & SLOW)
        assert exceeded == naive_exceeded(last, min(min_calls, size), failure_rate, slow_rate)
        if exceeded:  # as the breaker does: it opens, and starts afresh when it closes
            window.clear()
            seen.clear()


@settings(max_examples=300, deadline=None)
@given(
    seconds=st.integers(min_value=1, max_value=8),
    min_calls=st.integers(min_value=1, max_value=6),
    failure_rate=st.sampled_from([0.25, 0.5, 1.0]),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 1.75, 3.0, 9.5, 20.0]), codes),
        max_size=60,
    ),
    start=st.sampled_from([0.0, 0.5, 1_000_000.25]),
)
def test_time_window_matches_the_calls_of_the_last_seconds(
    seconds, min_calls, failure_rate, steps, start
):
    window = TimeWindow(seconds).build(min_calls, failure_rate, 1.0)
    now = start
    seen: list[tuple[float, int]] = []
    for advance, code in steps:
        now += advance
        exceeded = window.record(code, now)
        seen.append((now, code))
        inside = [c for t, c in seen if int(t // 1) > int(now // 1) - seconds]
        counts = window.counts(now)
        assert counts.calls == len(inside)
        assert counts.failures == sum(1 for c in inside if c & FAILED)
        assert counts.slow == sum(1 for c in inside if c & SLOW)
        assert exceeded == naive_exceeded(inside, min_calls, failure_rate, 1.0)
        if exceeded:
            window.clear()
            seen.clear()
    later = now + seconds / 2
    inside = [c for t, c in seen if int(t // 1) > int(later // 1) - seconds]
    assert window.counts(later).calls == len(inside)


def test_clear_empties_both_windows():
    for spec in (CountWindow(5), TimeWindow(5)):
        window = spec.build(1, 0.5, 1.0)
        for code in (FAILED, 0, SLOW):
            window.record(code, 10.0)
        window.clear()
        counts = window.counts(10.0)
        assert (counts.calls, counts.failures, counts.slow) == (0, 0, 0)
        assert window.record(FAILED, 10.0) is True  # 1 of 1 failed, min_calls 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (lambda: CountWindow(0), "size must be an int >= 1"),
        (lambda: TimeWindow(0), "seconds must be an int >= 1"),
        (lambda: TimeWindow(2.5), "one-second buckets"),
    ],
)
def test_window_sizes_are_validated(spec, message):
    with pytest.raises(ValueError, match=message):
        spec()
