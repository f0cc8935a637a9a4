"""Reading logs: when each line happened, and following a file as it grows and rotates.

`TimestampReader` finds a line's time:

- JSON lines: the field named by `field` (a selector such as `$.time`), else the first of
  `timestamp`, `time`, `@timestamp`, `ts` present at the top level;
- other lines: the column named by `field` (`$1` is the first space-delimited column), or
  the `ts` group (else group 1) of `regex`, else a leading ISO 8601 time
  (`2024-05-01T12:00:00Z ...`) or the first `[10/Oct/2000:13:55:36 -0700]`;
- values: ISO 8601 (no zone means UTC), epoch seconds (numbers above 1e11 are read as
  milliseconds), or `format` ("iso8601", "epoch", "epoch_ms" or a strptime format).

A line whose time cannot be read gets None: the caller counts it and sets it aside.

`FileTail` returns the complete lines appended to a file since the last call, and follows
the file when it is truncated (copytruncate) or replaced (rename and create).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from pathlib import Path

from sagaway.observe.filters._match import split_fields

__all__ = ["FileTail", "TimestampReader"]

_AUTO_KEYS = ("timestamp", "time", "@timestamp", "ts")
_LEADING_ISO = re.compile(
    r"\s*\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
)
_APACHE = re.compile(r"\[(\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\]")
_APACHE_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
_KEY_VALUE = r'"{key}"\s*:\s*("[^"\\]*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)'
FORMATS = ("auto", "iso8601", "epoch", "epoch_ms")


def _epoch(raw: float | str, unit: str) -> float | None:
    """Seconds for an epoch value, or None when it is not a finite number."""
    try:
        number = float(raw)
    except (ValueError, OverflowError):  # OverflowError: an integer beyond float's range
        return None
    if not math.isfinite(number):  # an infinite time would break every bucket after it
        return None
    if unit == "epoch_ms" or (unit == "auto" and abs(number) > 1e11):
        return number / 1000.0
    return number


class TimestampReader:
    """Reads the time of a log line; see the module docstring. Raises ValueError for a bad
    `field`, `format` or `regex`."""

    def __init__(
        self, field: str | None = None, format: str = "auto", regex: str | None = None
    ) -> None:
        self.format = format
        self.field = field
        self._json_path: tuple[str, ...] | None = None
        self._column: int | None = None
        if field is not None:
            if re.fullmatch(r"\$\d+", field):
                self._column = int(field[1:])
                if self._column < 1:
                    raise ValueError("timestamp field $N counts columns from $1")
            elif re.fullmatch(r"\$(\.[A-Za-z0-9_\-@]+)+", field):
                self._json_path = tuple(field[2:].split("."))
            else:
                raise ValueError(
                    f"timestamp field {field!r} must be a JSON selector such as $.time "
                    "or a column such as $1"
                )
        self._regex = re.compile(regex) if regex else None
        keys = [self._json_path[-1]] if self._json_path else list(_AUTO_KEYS)
        self._fast = (
            [re.compile(_KEY_VALUE.format(key=re.escape(k))).findall for k in keys]
            if (self._json_path is None or len(self._json_path) == 1)
            else []
        )
        self._last: tuple[str, float] = ("", 0.0)

    def read(self, line: str) -> float | None:
        """Seconds since the epoch for `line`, or None when it has no readable time."""
        stripped = line.lstrip()
        if stripped.startswith("{"):
            raw = self._json_value(stripped)
        elif self._regex is not None:
            m = self._regex.search(line)
            raw = None if m is None else (m.group("ts") if "ts" in m.groupdict() else m.group(1))
        elif self._column is not None:
            columns = split_fields(line)
            raw = columns[self._column - 1] if len(columns) >= self._column else None
        else:
            m = _LEADING_ISO.match(line) or _APACHE.search(line)
            raw = None if m is None else m.group(1)
        return None if raw is None else self.parse(raw)

    def _json_value(self, line: str) -> str | float | None:
        if "\\" not in line:
            # Fast path: a top-level key written once, with a plain string or number.
            for find in self._fast:
                found = find(line)
                if len(found) == 1:
                    token = found[0]
                    return token[1:-1] if token.startswith('"') else float(token)
                if found:
                    break
        try:
            document = json.loads(line)
        except (ValueError, RecursionError):  # nesting too deep to parse is not JSON either
            return None
        if not isinstance(document, dict):
            return None
        if self._json_path is not None:
            node = document
            for key in self._json_path:
                if not isinstance(node, dict) or key not in node:
                    return None
                node = node[key]
            return node if isinstance(node, str | int | float) else None
        for key in _AUTO_KEYS:
            value = document.get(key)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                return value
        return None

    def parse(self, raw: str | float) -> float | None:
        """Seconds since the epoch for one timestamp value, or None if it is not one."""
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int | float):
            return _epoch(raw, self.format) if self.format != "iso8601" else None
        if raw == self._last[0]:
            return self._last[1]
        value = self._parse_text(raw.strip())
        if value is not None:
            self._last = (raw, value)
        return value

    def _parse_text(self, text: str) -> float | None:
        fmt = self.format
        if fmt in ("epoch", "epoch_ms") or (fmt == "auto" and re.fullmatch(r"-?\d+(\.\d+)?", text)):
            return _epoch(text, fmt)
        try:
            if fmt in ("auto", "iso8601"):
                try:
                    moment = dt.datetime.fromisoformat(text.replace(",", "."))
                except ValueError:
                    if fmt == "iso8601":
                        return None
                    moment = dt.datetime.strptime(text, _APACHE_FORMAT)
            else:
                moment = dt.datetime.strptime(text, fmt)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.timestamp()


class FileTail:
    """New complete lines of a growing file, across truncation and replacement.

    `from_start=False` skips what the file holds when first opened. A missing file is
    waited for (no lines, no error). A last line without its newline is held back until
    the newline arrives.
    """

    def __init__(self, path: str | Path, from_start: bool = False) -> None:
        self.path = Path(path)
        self.rotations = 0
        self._handle = None
        self._inode: tuple[int, int] | None = None
        self._partial = b""
        self._open(at_end=not from_start)

    def _open(self, at_end: bool) -> None:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        stat = os.fstat(handle.fileno())
        self._handle, self._inode = handle, (stat.st_dev, stat.st_ino)
        if at_end:
            handle.seek(0, os.SEEK_END)
        self._partial = b""

    def read_lines(self) -> list[str]:
        """Complete lines appended since the last call (decoded as UTF-8, bad bytes replaced)."""
        if self._handle is None:
            self._open(at_end=False)
            if self._handle is None:
                return []
        chunks = [self._partial, self._handle.read()]
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            stat = None
        if stat is not None and (stat.st_dev, stat.st_ino) != self._inode:
            # Replaced: finish the old file (read above), then start on the new one.
            self._handle.close()
            self.rotations += 1
            if chunks[-1] and not chunks[-1].endswith(b"\n"):
                chunks.append(b"\n")
            self._open(at_end=False)
            if self._handle is not None:
                chunks.append(self._handle.read())
        elif stat is not None and stat.st_size < self._handle.tell():
            # Truncated in place (copytruncate): start again from the top.
            self.rotations += 1
            self._handle.seek(0)
            chunks = [self._handle.read()]
        data = b"".join(chunks)
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def close(self) -> None:
        """Release the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
