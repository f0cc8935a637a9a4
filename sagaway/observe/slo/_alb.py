"""Application Load Balancer access logs: the format, where the files are, and a line reader.

The format follows AWS's "Access log entries" for Application Load Balancers: space-separated
fields in a fixed order, some enclosed in double quotes, new fields only ever appended at the end
(readers must ignore trailing fields they do not know). This module holds

- `FIELDS`, the documented field order;
- `find_log_files`, which expands files and directories (recursively, in the AWS key layout);
- `parse_line` / `diagnose`, the pure-Python reader used for lines the DuckDB scanner sets aside,
  to recover what can be recovered and to say, in the quarantine file, why a line was refused;
- `Quarantine`, the file where refused lines go, with their file and line number.

The acceptance rules are shared with the SQL scanner (`sagaway.observe.slo._alb_scan`) so that both
paths agree on which lines count; see `RULES`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sagaway.errors import ObserveError

__all__ = [
    "FIELDS",
    "HEAD_FIELDS",
    "RULES",
    "AlbEntry",
    "MalformedLine",
    "Quarantine",
    "diagnose",
    "find_log_files",
    "parse_line",
]

# Every field of an access log entry, in the order AWS documents them. The names of the fields
# AWS writes as `target:port` and `client:port` are spelled with an underscore here.
FIELDS: tuple[str, ...] = (
    "type",
    "time",
    "elb",
    "client_port",
    "target_port",
    "request_processing_time",
    "target_processing_time",
    "response_processing_time",
    "elb_status_code",
    "target_status_code",
    "received_bytes",
    "sent_bytes",
    "request",
    "user_agent",
    "ssl_cipher",
    "ssl_protocol",
    "target_group_arn",
    "trace_id",
    "domain_name",
    "chosen_cert_arn",
    "matched_rule_priority",
    "request_creation_time",
    "actions_executed",
    "redirect_url",
    "error_reason",
    "target_port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "conn_trace_id",
    "transformed_host",
    "transformed_uri",
    "request_transform_status",
)
# The twelve bare fields before the quoted request.
HEAD_FIELDS = FIELDS[:12]
# Fields every ALB log has carried since 2016; later ones are optional (older logs lack them).
REQUIRED_FIELDS = FIELDS[:18]

# What makes a line acceptable, in words; `diagnose` checks the same rules in this order, and the
# SQL scanner checks them with the expressions in `_alb_scan`.
RULES = (
    "the text before the first double quote is exactly 12 fields separated by single spaces",
    "time is ISO 8601 UTC with microseconds (2024-05-01T12:00:00.123456Z)",
    "the three processing times are numbers (-1 when the load balancer could not dispatch)",
    "elb_status_code is an HTTP status (100-599); target_status_code is one or '-'",
    'the quoted request (no double quote inside) is followed by the quoted user agent (`" "`)',
    "user_agent is followed by ssl_cipher, ssl_protocol, target_group_arn and the quoted trace_id",
)
# The structural check after the request, as an SQL LIKE pattern (`%` is any text); the Python
# reader compiles the same pattern so that both agree.
TAIL_LIKE = '%" "%" % % % "%"%'
_TAIL_PARTS = tuple(part for part in TAIL_LIKE.split("%") if part)
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_STATUS = re.compile(r"[-+]?\d+")
_LOG_SUFFIXES = (".log", ".log.gz")


class MalformedLine(ObserveError, ValueError):
    """A line that is not an ALB access log entry; the message says which rule it breaks."""


@dataclass(frozen=True)
class AlbEntry:
    """One access log entry. Text fields keep AWS's spelling (`-` for none); the fields the SLO
    computation uses are also given typed: `timestamp` (seconds since the epoch, UTC), the three
    processing times in seconds (-1 when the load balancer could not dispatch), the two status
    codes (`target_status` None for `-`) and the request split into method, host and path."""

    fields: dict[str, str]
    timestamp: float
    request_processing_time: float
    target_processing_time: float
    response_processing_time: float
    elb_status: int
    target_status: int | None
    method: str
    host: str
    path: str
    extra: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> str:
        """The text of a field by its `FIELDS` name ('-' for an optional field not present)."""
        return self.fields.get(name, "-")


def _time(text: str) -> float:
    if not _TIME.fullmatch(text):
        raise MalformedLine(
            f"time {text[:40]!r} is not ISO 8601 UTC with microseconds "
            "(expected like 2024-05-01T12:00:00.123456Z)"
        )
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise MalformedLine(f"time {text!r} is not a valid date and time: {exc}") from None


def _seconds(name: str, text: str) -> float:
    if _NUMBER.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
    raise MalformedLine(f"{name} {text[:20]!r} is not a number of seconds")


def _status(name: str, text: str, *, dash: bool) -> int | None:
    if dash and text == "-":
        return None
    if _STATUS.fullmatch(text) and 100 <= int(text) <= 599:
        return int(text)
    allowed = "an HTTP status code or '-'" if dash else "an HTTP status code (100-599)"
    raise MalformedLine(f"{name} {text[:20]!r} is not {allowed}")


def split_request(request: str) -> tuple[str, str, str]:
    """Method, host (lower case, without port) and path (with query) of a request line such as
    `GET https://shop.example.com:443/api/cart?x=1 HTTP/1.1`; '' for parts that are missing
    (a malformed request is logged as `- http://host:80- -`)."""
    method, _, rest = request.partition(" ")
    url = rest.partition(" ")[0]
    scheme_sep = url.find("://")
    if scheme_sep < 0:
        return method, "", url if url.startswith("/") else ""
    after = url[scheme_sep + 3 :]
    slash = after.find("/")
    hostport, path = (after, "") if slash < 0 else (after[:slash], after[slash:])
    if hostport.startswith("["):
        host = hostport.partition("]")[0] + "]"
    else:
        host = hostport.partition(":")[0]
    return method, host.lower(), path


def _like_tail(line: str) -> bool:
    """`line LIKE TAIL_LIKE`, evaluated as SQL does: each literal part found in order."""
    at = 0
    for part in _TAIL_PARTS:
        found = line.find(part, at)
        if found < 0:
            return False
        at = found + len(part)
    return True


def _tokens(text: str) -> Iterator[str]:
    """Fields of `text`, quoted or bare. A quoted field ends at a quote followed by a space or
    the end of the line; AWS quotes some fields in one place and not in another, so quotes are
    removed and both forms give the same value."""
    i, n = 0, len(text)
    while i < n:
        if text[i] == " ":
            i += 1
            continue
        if text[i] == '"':
            end = i + 1
            while True:
                end = text.find('"', end)
                if end < 0 or end + 1 == n or text[end + 1] == " ":
                    break
                end += 1
            if end < 0:  # unterminated: take the rest
                yield text[i + 1 :]
                return
            yield text[i + 1 : end]
            i = end + 1
        else:
            end = text.find(" ", i)
            end = n if end < 0 else end
            yield text[i:end]
            i = end


def parse_line(line: str) -> AlbEntry:
    """Parse one access log line (without its newline).

    Raises `MalformedLine` naming the first rule of `RULES` the line breaks. Fields after the
    documented ones are kept in `AlbEntry.extra`; optional fields a line does not have read '-'.
    """
    quote = line.find('"')
    if quote < 0:
        raise MalformedLine("no quoted request: the line has no double quote")
    head = line[:quote].split(" ")
    if len(head) != 13 or head[12] != "":
        found = len(head) - (1 if head[-1] == "" else 0)
        raise MalformedLine(
            f"expected 12 space-separated fields before the quoted request, found {found}"
        )
    timestamp = _time(head[1])
    times = [_seconds(FIELDS[i], head[i]) for i in (5, 6, 7)]
    elb_status = _status("elb_status_code", head[8], dash=False)
    target_status = _status("target_status_code", head[9], dash=True)
    request_end = line.find('"', quote + 1)
    if request_end < 0 or line[request_end : request_end + 3] != '" "':
        raise MalformedLine('the quoted request is not followed by the quoted user agent (`" "`)')
    if not _like_tail(line):
        raise MalformedLine(
            "the line ends before ssl_cipher, ssl_protocol, target_group_arn and the quoted "
            "trace_id (truncated?)"
        )
    request = line[quote + 1 : request_end]
    tail = list(_tokens(line[request_end + 2 :]))
    values = [*head[:12], request, *tail]
    fields = dict(zip(FIELDS, values, strict=False))
    method, host, path = split_request(request)
    return AlbEntry(
        fields=fields,
        timestamp=timestamp,
        request_processing_time=times[0],
        target_processing_time=times[1],
        response_processing_time=times[2],
        elb_status=elb_status or 0,
        target_status=target_status,
        method=method,
        host=host,
        path=path,
        extra=tuple(values[len(FIELDS) :]),
    )


def diagnose(line: str) -> str | None:
    """Why `line` is not an acceptable access log entry, or None if it is."""
    try:
        parse_line(line)
    except MalformedLine as exc:
        return str(exc)
    return None


def find_log_files(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Expand `paths` into the access log files to read, sorted, without duplicates.

    A file is taken whatever its name; a directory is searched recursively for `*.log` and
    `*.log.gz` (the AWS key layout `AWSLogs/<account>/elasticloadbalancing/<region>/yyyy/mm/dd/`
    or any other). Raises FileNotFoundError naming a path that does not exist, and ValueError
    when a directory holds no log file.
    """
    found: set[str] = set()
    for item in paths:
        path = Path(item)
        if path.is_file():
            found.add(str(path))
        elif path.is_dir():
            inside = [
                str(p) for p in path.rglob("*") if p.name.endswith(_LOG_SUFFIXES) and p.is_file()
            ]
            if not inside:
                raise ValueError(
                    f"{path}: no access log files (*.log or *.log.gz) in this directory or below"
                )
            found.update(inside)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return sorted(found)


def _unsafe(c: str) -> bool:
    # C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a reader
    # might take as the end of a line or a field.
    return c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029"


def printable(raw: bytes) -> str:
    """Decode a raw line for the quarantine file and the SQL re-check: UTF-8, with invalid bytes
    and control characters (tab and Unicode line separators included) written as backslash
    escapes, so that nothing is lost and nothing can split the line or its fields."""
    text = raw.decode("utf-8", errors="backslashreplace")
    if any(map(_unsafe, text)):
        text = "".join(
            (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}") if _unsafe(c) else c
            for c in text
        )
    return text


class Quarantine:
    """Where refused lines go: one JSON object per line with `file`, `line` (1-based number in
    that file), `reason` and `text`. The file is replaced on the first refused line, and a
    file left by an earlier run is removed on `close()` when no line was refused."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self.count = 0
        self._fh: IO[str] | None = None

    def add(self, file: str, line: int, reason: str, text: str) -> None:
        """Set one line aside."""
        if self._fh is None:
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        record = {"file": file, "line": line, "reason": reason, "text": text}
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        """Flush and close the file; remove an earlier run's file if nothing was set aside."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self.count == 0:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
