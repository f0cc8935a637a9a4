"""`sagaway metrics ...`: the engine's metrics from a store, for Prometheus or as series."""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

from sagaway.cli import CliError, port_number, whole_number
from sagaway.cli.runs import add_db_option

MINUTES = whole_number(1, 525_600)  # a year


def register(commands: argparse._SubParsersAction) -> None:
    metrics = commands.add_parser("metrics", help="the engine's metrics: serve or print them")
    sub = metrics.add_subparsers(dest="metrics_command", metavar="ACTION")
    sub.required = True

    serve = sub.add_parser(
        "serve",
        help="serve /metrics in Prometheus text format for every worker of a store",
    )
    add_db_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=port_number, default=9464, help=f"port ({port_number.span}; default 9464)"
    )
    serve.set_defaults(handler=serve_command)

    series = sub.add_parser("series", help="print one metric per minute")
    add_db_option(series)
    series.add_argument("name", help="e.g. runs_finished, retries, step_seconds, queue_depth")
    series.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="LABEL=VALUE",
        help="only label sets with this value (repeatable), e.g. --where status=compensated",
    )
    series.add_argument(
        "--minutes",
        type=MINUTES,
        default=60,
        help=f"how far back ({MINUTES.span}; default 60)",
    )
    series.add_argument(
        "--stat", default="count", help="count (default), sum, avg, min, max per minute"
    )
    series.add_argument("--json", action="store_true", help="print JSON")
    series.set_defaults(handler=series_command)


def _store(db: str | None) -> Any:
    from sagaway.errors import SagawayError
    from sagaway.store import open_store

    try:
        return open_store(db, read_only=True)
    except SagawayError as exc:
        raise CliError(str(exc)) from None


def serve_command(args: argparse.Namespace) -> int:
    from sagaway.observe.metrics import serve_metrics

    store = _store(args.db)
    try:
        server = serve_metrics(store, args.host, args.port)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    print(f"serving http://{args.host}:{args.port}/metrics for {store.description}")
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    store.close()
    return 0


def series_command(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from sagaway.observe.metrics import engine_statistic, metric_series

    where = {}
    for item in args.where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--where {item!r} is not LABEL=VALUE, e.g. --where status=failed")
        where[key] = value
    try:
        stat = engine_statistic(args.stat)
    except ValueError as exc:
        raise CliError(f"--stat: {exc}") from None
    store = _store(args.db)
    try:
        series = metric_series(store, args.name, where, since=time.time() - args.minutes * 60)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    finally:
        store.close()
    end = series.bucket_start(time.time()) + 60
    points = series.datapoints(end, args.minutes, stat)
    starts = [end - (args.minutes - i) * 60 for i in range(args.minutes)]
    if args.json:
        print(json.dumps([{"minute": t, "value": v} for t, v in zip(starts, points, strict=True)]))
        return 0
    if all(v is None for v in points):
        print(f"no data in the last {args.minutes} minutes")
        return 0
    for t, v in zip(starts, points, strict=True):
        if v is not None:
            when = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")
            print(f"{when}  {v:g}")
    return 0
