"""Where `sagaway alarms replay` and `watch` get their data: logs, the store, ALB access logs.

Each helper turns a mistake the user can fix (a missing --logs, a store that does not exist,
SLO alerts without access logs, a malformed time) into a one-line `CliError`.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from sagaway.cli import CliError


def add_source_options(parser: argparse.ArgumentParser, *, logs_help: str) -> None:
    """--logs, --db and --alb: the three places alarms read from."""
    parser.add_argument("--logs", action="append", metavar="FILE", help=logs_help)
    parser.add_argument(
        "--db",
        metavar="URL",
        help="store to read engine metrics from (default: store: in the config, else "
        "$SAGAWAY_DB, else ./sagaway.db)",
    )
    parser.add_argument(
        "--alb",
        action="append",
        metavar="PATH",
        help="ALB access log file or directory for the SLO alerts (repeatable; replaces "
        "slos.alb of the config)",
    )


def parse_time(text: str | None, option: str) -> float | None:
    """An ISO 8601 time (no zone: UTC) as seconds since the epoch."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"{option} {text!r} is not an ISO 8601 time; write e.g. 2024-05-01T12:00:00Z"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def require_logs(config: Any, logs: list[str] | None) -> None:
    """Alarms on log filters need --logs."""
    readers = [name for name in config.alarms if name not in config.engine]
    if readers and not logs:
        raise CliError(
            f"alarms {', '.join(readers)} read log filters: give the log files with --logs FILE"
        )


def open_engine(config: Any, db: str | None, *, cache: bool) -> tuple[Any, Any]:
    """(store, EngineMetricReader) for the config's engine-metric alarms, or (None, None)."""
    if not config.reads_engine:
        return None, None
    from sagaway.errors import ConfigurationError, SagawayError
    from sagaway.observe.alarms import EngineMetricReader
    from sagaway.store import open_store

    try:
        url = config.store_url(db)
    except ConfigurationError as exc:
        raise CliError(f"{exc} (or give the store with --db URL)") from None
    try:
        store = open_store(url, read_only=True)
    except SagawayError as exc:
        raise CliError(
            f"alarms {', '.join(config.reads_engine)} read engine metrics, but the store cannot be "
            f"opened: {exc}"
        ) from None
    return store, EngineMetricReader(store, cache=cache)


def slo_alerts(config: Any, alb: list[str] | None) -> Any:
    """The config's SLO alerts with their access logs (--alb replaces slos.alb), or None."""
    alerts = config.slo_alerts
    if alerts is None:
        if alb:
            raise CliError(f"--alb: {config.source} declares no slos: to read access logs for")
        return None
    if alb:
        alerts.paths = list(alb)
    if not alerts.paths:
        raise CliError(
            f"{config.source}: slos: give the ALB access logs with alb: [path] or --alb PATH"
        )
    return alerts


def unmatched_notes(config: Any, reader: Any) -> list[str]:
    """One note per engine-metric alarm whose labels match nothing stored (a misspelt saga
    name would otherwise never alarm, silently)."""
    from sagaway.observe.alarms import EngineMetricReadError

    notes = []
    for name, ref in config.engine.items():
        try:
            why = reader.unmatched(ref)
        except EngineMetricReadError as exc:
            why = str(exc)
        if why:
            notes.append(f"alarm {name!r} reads {ref.describe()}: {why}")
    return notes
