"""Read ALB access logs with DuckDB and count requests per minute, for any number of counters.

The fast path is one DuckDB query over every file. DuckDB's CSV reader splits each line at its
double quotes, which gives the twelve fields before the request, the request, and the fields
around the user agent and trace id that show a line is complete; the leading fields are then
split and typed in SQL, and rows are grouped by file and minute, with one pair of conditional
counts (requests, bad requests) per `Counter`. No Python code runs per line.

A minute holds the entries logged in (end - 60 s, end], its end included, so that a window
(at - w, at] is made of whole minutes when the minutes end at `at`: they do when `at` is given,
and are the minutes of the clock otherwise.

A file in which any line breaks the rules (`_alb.RULES`), that DuckDB cannot decode, or whose
gzip stream is damaged, takes the careful path instead: its rows from the fast query are dropped,
Python reads the file line by line (recovering everything before a gzip error), and the lines
go through the SQL version of the rules with their line numbers; lines that still fail are
written to the quarantine with the reason. So every line is counted once, as parsed or as
malformed. The fast path's checks are stricter than the rules, never looser (see `_FAST_FIELDS`),
so a line it accepts is one the careful path would accept, with the same values.
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO

from sagaway.observe.metrics._series import Series
from sagaway.observe.slo._alb import TAIL_LIKE, Quarantine, diagnose, printable

__all__ = [
    "COLUMNS",
    "AlbScan",
    "Counter",
    "SourceStats",
    "request_filter",
    "scan_alb",
    "sql_time",
]

# Columns a `Counter` may use in its SQL conditions (with the macros of `_MACROS`).
COLUMNS = {
    "t": "TIMESTAMP: the `time` field (when the response was sent), UTC",
    "elb_status": "INTEGER: elb_status_code",
    "target_status": "INTEGER: target_status_code, NULL for '-'",
    "request_processing_time": "DOUBLE seconds, -1 when not dispatched",
    "target_processing_time": "DOUBLE seconds, -1 when not dispatched",
    "response_processing_time": "DOUBLE seconds, -1 when not dispatched",
    "request": "VARCHAR: the request as logged (method, URL, protocol)",
    "method": "VARCHAR: request method ('-' for a malformed request); alb_method(request)",
    "host": "VARCHAR: host of the request URL, lower case, without port; alb_host(request)",
    "path": "VARCHAR: path and query of the request URL; alb_path(request)",
}

# How the request splits into method, host and path, as macros so that a condition can compute
# them only for the rows that need it (see `request_filter`); the `rows` step uses the same ones.
_MACROS = """
CREATE OR REPLACE TEMP MACRO alb_method(request) AS split_part(request, ' ', 1);
CREATE OR REPLACE TEMP MACRO alb_url(request) AS split_part(request, ' ', 2);
CREATE OR REPLACE TEMP MACRO alb_hostport(url) AS
  CASE WHEN contains(url, '://') THEN split_part(url, '/', 3) ELSE '' END;
CREATE OR REPLACE TEMP MACRO alb_host_of(hostport) AS
  lower(CASE WHEN starts_with(hostport, '[') THEN split_part(hostport, ']', 1) || ']'
        ELSE split_part(hostport, ':', 1) END);
CREATE OR REPLACE TEMP MACRO alb_path_of(url, hostport) AS
  CASE WHEN contains(url, '://')
         THEN substr(url, length(split_part(url, '/', 1)) + length(hostport) + 3)
       WHEN starts_with(url, '/') THEN url ELSE '' END;
CREATE OR REPLACE TEMP MACRO alb_host(request) AS alb_host_of(alb_hostport(alb_url(request)));
CREATE OR REPLACE TEMP MACRO alb_path(request) AS
  alb_path_of(alb_url(request), alb_hostport(alb_url(request)));
"""

# Careful path: `{source}` yields f (file), line and the `{keep}` columns; the fields are cut out
# of the line exactly as `_alb.parse_line` does. `framed` is every rule that is not about the
# twelve leading fields.
_LINE_FIELDS = """
fields AS (
  SELECT f{keep}, line, strpos(line, '"') AS q, left(line, q - 1) AS head,
    split_part(line, '"', 2) AS request,
    q > 0 AND substr(line, q + length(request) + 1, 3) = '" "' AND line LIKE '{tail}' AS framed
  FROM {source}),
"""

# Fast path: `{source}` is the line split at every double quote (`_split_source`): head (before
# the first quote), request, gap, agent, mid (ssl_cipher ssl_protocol target_group_arn), trace
# and `more` (present when the trace id's closing quote is). head and request are the careful
# path's, and `framed` here implies the careful one: gap = ' ' is the `" "` after the request,
# and `mid LIKE ' % % % '` between the fourth and fifth quotes, with a sixth one after, matches
# the tail pattern. Missing fields are NULL and fail it. A valid line whose quotes are elsewhere
# (a user agent holding a double quote, say) may fail it too: the careful path then decides.
_FAST_FIELDS = """
fields AS (
  SELECT f, head, request,
    request IS NOT NULL AND gap = ' ' AND agent IS NOT NULL AND mid LIKE ' % % % '
    AND more IS NOT NULL AS framed
  FROM {source}),
"""

# Both paths: the twelve leading fields, typed and checked, then the request split.
_TYPED = """
split AS (SELECT *, string_split(head, ' ') AS h FROM fields),
typed AS (
  SELECT *,
    TRY_CAST(h[2] AS TIMESTAMP) AS t,
    TRY_CAST(h[6] AS DOUBLE) AS request_processing_time,
    TRY_CAST(h[7] AS DOUBLE) AS target_processing_time,
    TRY_CAST(h[8] AS DOUBLE) AS response_processing_time,
    TRY_CAST(h[9] AS INTEGER) AS elb_status,
    TRY_CAST(h[10] AS INTEGER) AS target_status
  FROM split),
checked AS (
  SELECT *, coalesce(
    framed AND len(h) = 13 AND h[13] = ''
    AND h[2] LIKE '____-__-__T__:__:__.______Z' AND t IS NOT NULL
    AND isfinite(request_processing_time) AND isfinite(target_processing_time)
    AND isfinite(response_processing_time)
    AND elb_status BETWEEN 100 AND 599
    AND (h[10] = '-' OR target_status BETWEEN 100 AND 599), false) AS ok
  FROM typed),
rows AS (
  SELECT *, alb_method(request) AS method, alb_url(request) AS url,
    alb_hostport(url) AS hostport, alb_host_of(hostport) AS host,
    alb_path_of(url, hostport) AS path
  FROM checked)
"""

# The fields of the split source, in line order (see `_FAST_FIELDS`).
_SPLIT_COLUMNS = ("head", "request", "gap", "agent", "mid", "trace", "more")
# An empty field must stay '' (not NULL) so that NULL means "missing"; DuckDB turns this string
# into NULL too, and a line holding it exactly as a field merely takes the careful path.
_NULL_TEXT = "\x02"
_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
_PREFIX = re.compile(r"/[\x21-\x7e]*")
_USUAL_MAX = 16  # starts_with tests tried first; more would cost more than they save


def request_filter(
    hosts: Sequence[str] = (), path_prefixes: Sequence[str] = (), methods: Sequence[str] = ()
) -> str:
    """An SQL condition (over `COLUMNS`) that holds exactly when the request's host is one of
    `hosts`, its path starts with one of `path_prefixes` and its method is one of `methods`
    (each part only if given; nothing given: `true`).

    Splitting every request into method, host and path costs more than all the other checks of
    a line, so when it can, the condition decides most requests without it: a request that
    starts like `GET https://host:443/prefix` (the load balancer's usual spelling) passes; one
    holding none of the prefixes fails; one matching an anchored regular expression for
    `METHOD scheme://host[:port]/prefix` (host in lower case) passes. Only the others are split
    (by the `alb_*` macros) and compared.
    """

    def exact(method: str, host: str, path: str) -> str:
        parts = []
        if methods:
            parts.append(f"{method} IN ({', '.join(map(_sql_quote, methods))})")
        if hosts:
            parts.append(f"{host} IN ({', '.join(map(_sql_quote, hosts))})")
        if path_prefixes:
            starts = (f"starts_with({path}, {_sql_quote(p)})" for p in path_prefixes)
            parts.append("(" + " OR ".join(starts) + ")")
        return " AND ".join(parts) or "true"

    plain = exact("method", "host", "path")
    if not (hosts or path_prefixes):
        return plain
    if not all(map(_HOST.fullmatch, hosts)) or not all(map(_PREFIX.fullmatch, path_prefixes)):
        return plain
    branches = []
    usual = [
        f"{m} {scheme}://{h}:{port}{p}"
        for m in methods
        for scheme, port in (("https", 443), ("http", 80))
        for h in hosts
        for p in path_prefixes
    ]
    if 0 < len(usual) <= _USUAL_MAX:
        starts = " OR ".join(f"starts_with(request, {_sql_quote(u)})" for u in usual)
        branches.append(f"WHEN {starts} THEN true")
    if path_prefixes:  # the path is part of the request: no prefix in it, no match
        contained = " OR ".join(f"contains(request, {_sql_quote(p)})" for p in path_prefixes)
        branches.append(f"WHEN NOT ({contained}) THEN false")
    pattern = "^" + _alternatives(methods, "[^ ]*") + " [a-z]+://"
    # The host part ends where the URL's third '/' is (or where the URL ends), as in alb_hostport.
    pattern += _alternatives(hosts, "[^/ ]*") + ("(?::[0-9]*)?" if hosts else "")
    pattern += _alternatives(path_prefixes, "(?:[/ ]|$)")
    branches.append(f"WHEN regexp_matches(request, {_sql_quote(pattern)}) THEN true")
    split = exact("alb_method(request)", "alb_host(request)", "alb_path(request)")
    return f"CASE {' '.join(branches)} ELSE {split} END"


def _alternatives(texts: Sequence[str], otherwise: str) -> str:
    if not texts:
        return otherwise
    return "(?:" + "|".join(re.escape(t) for t in texts) + ")"


@dataclass(frozen=True)
class Counter:
    """A named pair of per-minute counts: requests matching `where`, and among them those
    matching `bad`. Both are SQL boolean expressions over `COLUMNS`."""

    name: str
    where: str = "true"
    bad: str = "false"


@dataclass
class SourceStats:
    """What was read, by one scan or by all the reads of `SloAlerts` so far: files, non-blank
    lines, lines parsed, lines set aside (malformed, in the file `quarantine`), and the start of
    the oldest entry's minute and the newest entry's time (seconds since the epoch, None when
    nothing parsed). `careful_files` are those a scan read line by line."""

    files: int = 0
    lines: int = 0
    parsed: int = 0
    malformed: int = 0
    first: float | None = None
    last: float | None = None
    careful_files: list[str] = field(default_factory=list)
    quarantine: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of the report's `source` object: the counts, and where malformed lines
        went when there are any."""
        out: dict[str, object] = {
            "files": self.files,
            "lines": self.lines,
            "parsed": self.parsed,
            "malformed": self.malformed,
        }
        if self.malformed:
            out["quarantine"] = self.quarantine
        return out

    as_dict = to_dict  # the name this method had first


@dataclass
class AlbScan:
    """Result of a scan: per counter, a one-minute `Series` whose bucket `count` is the number of
    requests and whose `total` is the number of bad ones; and the source statistics. The bucket
    starting at `s` holds the entries logged in (s, s + 60]."""

    series: dict[str, Series]
    source: SourceStats


def _sql_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parse_sql(source: str, *, careful: bool, keep: str = "") -> str:
    if careful:
        tail = TAIL_LIKE.replace("'", "''")
        fields = _LINE_FIELDS.format(source=source, keep=keep, tail=tail)
    else:
        fields = _FAST_FIELDS.format(source=source)
    return "WITH " + fields + _TYPED


def _utc(at: datetime) -> datetime:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def sql_time(at: datetime) -> str:
    """`at` as an SQL TIMESTAMP literal comparable with the column `t` (UTC)."""
    return f"{_sql_quote(_utc(at).strftime('%Y-%m-%d %H:%M:%S.%f'))}::TIMESTAMP"


_MINUTE_US = 60_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _minute_start_sql(at: datetime | None) -> str:
    """SQL for the start, in microseconds, of the minute holding `t`: minutes end at `at` (or
    at whole minutes of the clock) and hold their end, so an entry logged exactly at a minute's
    end belongs to that minute."""
    offset = 0 if at is None else (_utc(at) - _EPOCH) // timedelta(microseconds=1) % _MINUTE_US
    before = f"epoch_us(t) - 1 - {offset}"
    return f"epoch_us(t) - 1 - (({before}) % {_MINUTE_US} + {_MINUTE_US}) % {_MINUTE_US}"


def _aggregate_sql(
    source: str, counters: Sequence[Counter], at: datetime | None, *, careful: bool
) -> str:
    until = "" if at is None else f" AND t <= {sql_time(at)}"
    # Each condition once per row (DuckDB would evaluate a repeated one again).
    conditions = "".join(
        f", coalesce(ok{until} AND ({c.where}), false) AS w{i}, coalesce({c.bad}, false) AS b{i}"
        for i, c in enumerate(counters)
    )
    counts = "".join(
        f", count(*) FILTER (WHERE w{i}) AS n{i}, count(*) FILTER (WHERE w{i} AND b{i}) AS m{i}"
        for i in range(len(counters))
    )
    return (
        _parse_sql(source, careful=careful)
        + f", counted AS (SELECT f, t, ok{conditions} FROM rows)"
        f" SELECT f, {_minute_start_sql(at)} AS m, count(*) AS lines,"
        f" count(*) FILTER (WHERE ok) AS parsed, max(t) FILTER (WHERE ok) AS last{counts}"
        " FROM counted GROUP BY f, m"
    )


def _split_source(files: Sequence[str], *, rejects: bool) -> str:
    """Every line of `files` cut at its double quotes into `_SPLIT_COLUMNS` (extra fields are
    dropped, missing ones NULL; blank lines skipped), with f the index of its file."""
    listing = "[" + ", ".join(_sql_quote(f) for f in files) + "]"
    columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in _SPLIT_COLUMNS) + "}"
    options = (
        f"columns={columns}, delim='\"', quote='', escape='', header=false, auto_detect=false, "
        f"strict_mode=false, null_padding=true, nullstr={_sql_quote(_NULL_TEXT)}"
    )
    if rejects:
        options += ", store_rejects=true"
    return f"(SELECT file_index AS f, * FROM read_csv({listing}, {options}))"


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

    Entries after `at` (if given) are parsed but not counted, and the minutes end at `at`
    (otherwise at whole minutes of the clock); a minute holds its end, not its start. Lines
    that break the format go to `quarantine`; files that cannot be read at all raise OSError.
    Raises ValueError when the query fails, for example on a counter condition DuckDB cannot
    run.
    """
    import duckdb

    config: dict[str, object] = {"memory_limit": memory_limit, "preserve_insertion_order": False}
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    con.execute(_MACROS)
    stats = SourceStats(files=len(paths), quarantine=quarantine.path)
    origin = 0.0 if at is None else _utc(at).timestamp()
    series = {c.name: Series(60, origin=origin) for c in counters}
    careful: list[str] = []
    fast = list(paths)
    rows: list[tuple] = []
    rejects = False
    while fast:
        try:
            rows = con.execute(
                _aggregate_sql(_split_source(fast, rejects=rejects), counters, at, careful=False)
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
    refused_lines: dict[str, int] = {}
    for row in rows:
        name = fast[row[0]]
        refused_lines[name] = refused_lines.get(name, 0) + (row[2] - row[3])
    careful.extend(f for f, bad in refused_lines.items() if bad > 0)
    careful = sorted(set(careful))  # in path order, so the quarantine file is reproducible
    skip = set(careful)
    _merge([r for r in rows if fast[r[0]] not in skip], counters, series, stats)
    if careful:
        _careful(con, careful, counters, at, quarantine, series, stats)
    stats.careful_files = careful
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
        _, start_us, lines, parsed, last = row[:5]
        stats.lines += lines
        stats.parsed += parsed
        if start_us is None:
            continue
        minute = start_us / 1e6
        if last is not None:  # a group with a parsed entry: its minute is that entry's minute
            last_s = last.replace(tzinfo=UTC).timestamp()
            stats.first = minute if stats.first is None else min(stats.first, minute)
            stats.last = last_s if stats.last is None else max(stats.last, last_s)
        for i, c in enumerate(counters):
            total, bad = row[5 + 2 * i], row[6 + 2 * i]
            if total:
                # The middle of the minute: its start, rounded to a float, might fall before it.
                series[c.name].merge(minute + 30.0, count=total, total=bad)


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
        rows = con.execute(_aggregate_sql(source, counters, at, careful=True)).fetchall()  # type: ignore[attr-defined]
        _merge(rows, counters, series, stats)
        refused = con.execute(  # type: ignore[attr-defined]
            _parse_sql(source, careful=True, keep=", n")
            + "SELECT f, n, line FROM rows WHERE NOT ok AND line IS NOT NULL ORDER BY f, n"
        ).fetchall()
        for index, number, text in refused:
            reason = diagnose(text) or "refused by the scanner's checks (see RULES)"
            quarantine.add(files[index], number, reason, text)
    finally:
        os.unlink(tmp)
