"""Read ALB access logs with DuckDB and count requests per minute, for any number of counters.

The fast path is one DuckDB query over every file: each line is read as one string, its leading
fields are split and typed in SQL, and rows are grouped by file and minute, with one pair of
conditional counts (requests, bad requests) per `Counter`. No Python code runs per line.

A file in which any line breaks the rules (`alb.RULES`), that DuckDB cannot decode, or whose
gzip stream is damaged, takes the careful path instead: its rows from the fast query are dropped,
Python reads the file line by line (recovering everything before a gzip error), and the lines
go through the very same SQL again with their line numbers; lines that still fail are written
to the quarantine with the reason. So every line is counted once, as parsed or as malformed.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from sagaway.observe.alb import TAIL_LIKE, Quarantine, diagnose, printable
from sagaway.observe.series import Series

__all__ = ["COLUMNS", "AlbScan", "Counter", "SourceStats", "scan_alb"]

# Columns a `Counter` may use in its SQL conditions.
COLUMNS = {
    "t": "TIMESTAMP: the `time` field (when the response was sent), UTC",
    "elb_status": "INTEGER: elb_status_code",
    "target_status": "INTEGER: target_status_code, NULL for '-'",
    "request_processing_time": "DOUBLE seconds, -1 when not dispatched",
    "target_processing_time": "DOUBLE seconds, -1 when not dispatched",
    "response_processing_time": "DOUBLE seconds, -1 when not dispatched",
    "method": "VARCHAR: request method ('-' for a malformed request)",
    "host": "VARCHAR: host of the request URL, lower case, without port",
    "path": "VARCHAR: path and query of the request URL",
    "line": "VARCHAR: the whole line",
}

# Parsing in SQL, mirroring `alb.parse_line`. `{source}` yields columns f (file) and line.
_PARSE = """
raw AS (SELECT f{keep}, line, strpos(line, '"') AS q FROM {source}),
split AS (SELECT f{keep}, line, q, string_split(left(line, q - 1), ' ') AS h FROM raw),
typed AS (
  SELECT f{keep}, line, q, h,
    TRY_CAST(h[2] AS TIMESTAMP) AS t,
    TRY_CAST(h[6] AS DOUBLE) AS request_processing_time,
    TRY_CAST(h[7] AS DOUBLE) AS target_processing_time,
    TRY_CAST(h[8] AS DOUBLE) AS response_processing_time,
    TRY_CAST(h[9] AS INTEGER) AS elb_status,
    TRY_CAST(h[10] AS INTEGER) AS target_status,
    split_part(line, '"', 2) AS request
  FROM split),
checked AS (
  SELECT *, coalesce(
    q > 0 AND len(h) = 13 AND h[13] = ''
    AND h[2] LIKE '____-__-__T__:__:__.______Z' AND t IS NOT NULL
    AND isfinite(request_processing_time) AND isfinite(target_processing_time)
    AND isfinite(response_processing_time)
    AND elb_status BETWEEN 100 AND 599
    AND (h[10] = '-' OR target_status BETWEEN 100 AND 599)
    AND substr(line, q + length(request) + 1, 3) = '" "'
    AND line LIKE '{tail}', false) AS ok
  FROM typed),
rows AS (
  SELECT *,
    split_part(request, ' ', 1) AS method,
    split_part(request, ' ', 2) AS url,
    contains(url, '://') AS absolute,
    CASE WHEN absolute THEN split_part(url, '/', 3) ELSE '' END AS hostport,
    lower(CASE WHEN starts_with(hostport, '[') THEN split_part(hostport, ']', 1) || ']'
          ELSE split_part(hostport, ':', 1) END) AS host,
    CASE WHEN absolute THEN substr(url, length(split_part(url, '/', 1)) + length(hostport) + 3)
         WHEN starts_with(url, '/') THEN url ELSE '' END AS path
  FROM checked)
"""


@dataclass(frozen=True)
class Counter:
    """A named pair of per-minute counts: requests matching `where`, and among them those
    matching `bad`. Both are SQL boolean expressions over `COLUMNS`."""

    name: str
    where: str = "true"
    bad: str = "false"


@dataclass
class SourceStats:
    """What was read: files, non-blank lines, lines parsed, lines set aside (malformed), and the
    start of the oldest entry's minute and the newest entry's time (seconds since the epoch,
    None when nothing parsed)."""

    files: int = 0
    lines: int = 0
    parsed: int = 0
    malformed: int = 0
    first: float | None = None
    last: float | None = None
    careful_files: list[str] = field(default_factory=list)
    quarantine: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of the report's `source` object."""
        out: dict[str, object] = {
            "files": self.files,
            "lines": self.lines,
            "parsed": self.parsed,
            "malformed": self.malformed,
        }
        if self.malformed:
            out["quarantine"] = self.quarantine
        return out


@dataclass
class AlbScan:
    """Result of a scan: per counter, a one-minute `Series` whose bucket `count` is the number of
    requests and whose `total` is the number of bad ones; and the source statistics."""

    series: dict[str, Series]
    source: SourceStats


class _ScanError(Exception):
    pass


def _sql_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parse_sql(source: str, keep: str = "") -> str:
    return "WITH " + _PARSE.format(source=source, keep=keep, tail=TAIL_LIKE.replace("'", "''"))


def _aggregate_sql(source: str, counters: Sequence[Counter], at: datetime | None) -> str:
    until = ""
    if at is not None:
        utc = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
        until = f" AND t <= {_sql_quote(utc.strftime('%Y-%m-%d %H:%M:%S.%f'))}::TIMESTAMP"
    parts = []
    for i, c in enumerate(counters):
        parts.append(f"count(*) FILTER (WHERE ok{until} AND ({c.where})) AS n{i}")
        parts.append(f"count(*) FILTER (WHERE ok{until} AND ({c.where}) AND ({c.bad})) AS b{i}")
    extra = (", " + ", ".join(parts)) if parts else ""
    return (
        _parse_sql(source) + "SELECT f, epoch(date_trunc('minute', t)) AS m,"
        " count(*) FILTER (WHERE line IS NOT NULL) AS lines,"
        " count(*) FILTER (WHERE ok) AS parsed,"
        " max(t) FILTER (WHERE ok) AS last"
        f"{extra} FROM rows GROUP BY f, m"
    )


def _csv_source(files: Sequence[str], *, rejects: bool) -> str:
    listing = "[" + ", ".join(_sql_quote(f) for f in files) + "]"
    options = (
        "columns={'line': 'VARCHAR'}, delim='\\x01', quote='', escape='', header=false, "
        "auto_detect=false, strict_mode=false, filename=true"
    )
    if rejects:
        options += ", store_rejects=true"
    return f"(SELECT filename AS f, line FROM read_csv({listing}, {options}))"


def scan_alb(
    paths: Sequence[str],
    counters: Sequence[Counter],
    *,
    quarantine: Quarantine,
    at: datetime | None = None,
    threads: int | None = None,
    memory_limit: str = "512MB",
) -> AlbScan:
    """Count requests per minute in the access log files `paths` for each of `counters`.

    Entries after `at` (if given) are parsed but not counted. Lines that break the format go to
    `quarantine`; files that cannot be read at all raise OSError. Raises ValueError when the
    query fails, for example on a counter condition DuckDB cannot run.
    """
    import duckdb

    config: dict[str, object] = {"memory_limit": memory_limit, "preserve_insertion_order": False}
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    stats = SourceStats(files=len(paths), quarantine=quarantine.path)
    series = {c.name: Series(60) for c in counters}
    careful: list[str] = []
    fast = list(paths)
    rows: list[tuple] = []
    rejects = False
    while fast:
        try:
            rows = con.execute(
                _aggregate_sql(_csv_source(fast, rejects=rejects), counters, at)
            ).fetchall()
            break
        except duckdb.IOException as exc:  # a damaged gzip stream: that file goes the careful way
            broken = [f for f in fast if f in str(exc)]
            if not broken:
                raise
            careful.extend(broken)
            fast = [f for f in fast if f not in broken]
        except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
            if rejects or ("CSV" not in str(exc) and "unicode" not in str(exc).lower()):
                raise ValueError(
                    f"the log query failed (a filter such as path_regex may be invalid): {exc}"
                ) from None
            rejects = True  # undecodable bytes: run again, keeping the lines DuckDB refuses
        except duckdb.Error as exc:
            raise ValueError(
                f"the log query failed (a filter such as path_regex may be invalid): {exc}"
            ) from None
    if rejects and fast:
        refused = con.execute(
            "SELECT DISTINCT file_path FROM reject_errors"
            " JOIN reject_scans USING (scan_id, file_id)"
        ).fetchall()
        careful.extend(str(r[0]) for r in refused)
    by_file: dict[str, int] = {}
    for row in rows:
        by_file[row[0]] = by_file.get(row[0], 0) + (row[2] - row[3])
    careful.extend(f for f, bad in by_file.items() if bad > 0 and f not in careful)
    careful = list(dict.fromkeys(careful))
    skip = set(careful)
    _merge([r for r in rows if r[0] not in skip], counters, series, stats)
    if careful:
        _careful(con, careful, counters, at, quarantine, series, stats)
    stats.careful_files = sorted(skip)
    stats.malformed = quarantine.count
    con.close()
    return AlbScan(series=series, source=stats)


def _merge(
    rows: list[tuple],
    counters: Sequence[Counter],
    series: dict[str, Series],
    stats: SourceStats,
) -> None:
    for row in rows:
        _, minute, lines, parsed, last = row[:5]
        stats.lines += lines
        stats.parsed += parsed
        if last is not None:  # a group with a parsed entry: its minute is that entry's minute
            last_s = last.replace(tzinfo=UTC).timestamp()
            stats.first = minute if stats.first is None else min(stats.first, minute)
            stats.last = last_s if stats.last is None else max(stats.last, last_s)
        if minute is None:
            continue
        for i, c in enumerate(counters):
            total, bad = row[5 + 2 * i], row[6 + 2 * i]
            if total:
                series[c.name].merge(minute, count=total, total=bad)


_LONGEST = 1 << 20  # a longer line is cut here (it cannot be an access log entry anyway)


def _copy_numbered(path: str, index: int, out: IO[str]) -> tuple[int, str | None]:
    """Write the lines of `path` to `out` as `index TAB number TAB text`, streaming; return the
    number of lines and, if the gzip stream is damaged, what went wrong (the lines before the
    damage are kept)."""
    number = 0
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            while True:
                raw = fh.readline(_LONGEST)
                if not raw:
                    break
                number += 1
                if not raw.endswith(b"\n") and len(raw) == _LONGEST:
                    while (rest := fh.readline(_LONGEST)) and not rest.endswith(b"\n"):
                        pass
                raw = raw.rstrip(b"\n")
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                if raw:
                    out.write(f"{index}\t{number}\t{printable(raw)}\n")
    except (OSError, EOFError, zlib.error) as exc:
        return number, f"unreadable after line {number}: {exc}"
    return number, None


def _careful(
    con: object,
    files: list[str],
    counters: Sequence[Counter],
    at: datetime | None,
    quarantine: Quarantine,
    series: dict[str, Series],
    stats: SourceStats,
) -> None:
    """Python reads each file line by line; the same SQL decides, now with line numbers."""
    fd, tmp = tempfile.mkstemp(prefix="sagaway-alb-", suffix=".tsv")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for index, path in enumerate(files):
                count, damage = _copy_numbered(path, index, out)
                if damage is not None:
                    stats.lines += 1
                    quarantine.add(path, count + 1, f"gzip stream {damage}", "")
        source = (
            f"(SELECT f, n, line FROM read_csv({_sql_quote(tmp)}, columns={{'f': 'INTEGER', "
            "'n': 'BIGINT', 'line': 'VARCHAR'}, delim='\\t', quote='', escape='', header=false, "
            "auto_detect=false, strict_mode=false))"
        )
        rows = con.execute(_aggregate_sql(source, counters, at)).fetchall()  # type: ignore[attr-defined]
        _merge(rows, counters, series, stats)
        refused = con.execute(  # type: ignore[attr-defined]
            _parse_sql(source, keep=", n")
            + "SELECT f, n, line FROM rows WHERE NOT ok AND line IS NOT NULL ORDER BY f, n"
        ).fetchall()
        for index, number, text in refused:
            reason = diagnose(text) or "refused by the scanner's checks (see RULES)"
            quarantine.add(files[index], number, reason, text)
    finally:
        os.unlink(tmp)
