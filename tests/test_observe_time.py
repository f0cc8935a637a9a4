"""Durations and times as people write them, shared by every part of `sagaway.observe`."""

from __future__ import annotations

import pytest

from sagaway.observe._time import format_duration, iso_time, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("90s", 90),
        ("5m", 300),
        ("1.5h", 5400),
        ("30d", 2_592_000),
        ("2w", 1_209_600),
    ],
)
def test_durations_are_a_number_and_a_unit(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "5 minutes", "-5m", "0m", "m"])
def test_other_durations_are_refused_with_an_example(text):
    with pytest.raises(ValueError, match=r"e\.g\. 5m"):
        parse_duration(text)


def test_durations_read_back_for_people():
    assert format_duration(3903) == "1h 5m 3s"
    assert format_duration(86400 + 60) == "1d 1m"
    assert format_duration(0.4) == "0s"


def test_times_are_utc_with_a_z_and_decimals_only_when_the_second_has_a_fraction():
    assert iso_time(1714564980) == "2024-05-01T12:03:00Z"
    assert iso_time(1714564980.25) == "2024-05-01T12:03:00.250Z"
    assert iso_time(1714564980.25, digits=6) == "2024-05-01T12:03:00.250000Z"
    assert iso_time(1714564980.0000004, digits=6) == "2024-05-01T12:03:00Z"
