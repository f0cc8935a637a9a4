"""Times and durations as people write and read them: `5m`, `1h 5m 3s`, `2024-05-01T12:03:00Z`.

Written once for every subsystem of `sagaway.observe` (SLO windows, alarm lags, incident
durations, report and notification times) and for the command line.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["format_duration", "iso_time", "parse_duration"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `5m`, `1h`, `30d`, `2w`, `300ms`; ValueError otherwise."""
    match = _DURATION.match(str(text).strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: write a positive number and a unit, e.g. 5m")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """`1h 5m 3s` style, for people."""
    seconds = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts)


def iso_time(timestamp: float, *, digits: int = 3) -> str:
    """`2024-05-01T12:03:00Z` for a POSIX timestamp: ISO 8601 in UTC with a Z, and `digits`
    (3 or 6) decimals of the second when the time is not a whole second."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    if not moment.microsecond:
        timespec = "seconds"
    else:
        timespec = "microseconds" if digits == 6 else "milliseconds"
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
