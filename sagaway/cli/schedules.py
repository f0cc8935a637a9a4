"""`sagaway schedules list module:app`: the App's cron schedules, their next and last ticks."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from sagaway.cli import CliError
from sagaway.cli.runs import _console, _print_json, add_db_option


def register(commands: argparse._SubParsersAction) -> None:
    schedules = commands.add_parser("schedules", help="the cron schedules an App declares")
    sub = schedules.add_subparsers(dest="schedules_command", metavar="ACTION")
    sub.required = True
    listing = sub.add_parser(
        "list",
        help="each schedule with its next tick and the last tick a run was started for",
    )
    listing.add_argument("target", metavar="MODULE:ATTR", help="the App, e.g. shop.nightly:app")
    add_db_option(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=list_schedules)


def list_schedules(args: argparse.Namespace) -> int:
    from rich.table import Table

    from sagaway.cli.worker import load_app
    from sagaway.errors import SagawayError
    from sagaway.store import open_store

    app = load_app(args.target)
    now = datetime.now(UTC)
    try:
        store = open_store(args.db or app.url, create=False, read_only=True)
    except SagawayError as exc:
        raise CliError(str(exc)) from None
    try:
        rows = [
            {
                "saga": s.saga,
                "cron": s.cron,
                "tz": s.tz,
                "catch_up": s.catch_up,
                "next_tick": s.next_tick(now).isoformat(),
                "last_started": None
                if (last := s.last_started(store)) is None
                else last.isoformat(),
            }
            for s in app.schedules.values()
        ]
    finally:
        store.close()
    if args.json:
        _print_json(rows)
        return 0
    table = Table(title=f"{len(rows)} schedule(s)")
    for column in ("saga", "cron", "time zone", "catch up", "next tick (UTC)", "last started"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["saga"], r["cron"], r["tz"], r["catch_up"], r["next_tick"], r["last_started"] or "-"
        )
    _console().print(table)
    return 0
