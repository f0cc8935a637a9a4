"""`sagaway messages ...`: topics, consumer groups, dead letters (a triage view), redrive and
prune."""

from __future__ import annotations

import argparse
from typing import Any

from sagaway.cli import CliError, age_seconds, whole_number
from sagaway.cli.runs import _console, _print_json, _short, _steer, _when, add_db_option


def register(commands: argparse._SubParsersAction) -> None:
    messages = commands.add_parser(
        "messages", help="topics, consumer groups and dead letters of durable messaging"
    )
    sub = messages.add_subparsers(dest="messages_command", metavar="ACTION")
    sub.required = True

    topics = sub.add_parser("topics", help="topics with their retained messages and groups")
    groups = sub.add_parser(
        "groups", help="consumer groups: waiting, handled and dead messages, and lag"
    )
    dlq = sub.add_parser(
        "dlq",
        help="dead letters, grouped by how they failed",
        description="Dead letters (messages whose retries were spent), grouped by group and "
        "error fingerprint (the error with numbers and ids blanked), most frequent first; "
        "--each lists them one by one.",
    )
    dlq.add_argument("--group", help="only this consumer group")
    dlq.add_argument("--each", action="store_true", help="one line per dead letter")
    dlq.add_argument(
        "--limit",
        type=whole_number(1, 100_000),
        default=1000,
        help="read at most this many dead letters (from 1 to 100000; default 1000)",
    )
    redrive = sub.add_parser(
        "redrive", help="hand a group's dead letters to it again, with fresh attempts"
    )
    redrive.add_argument("group", metavar="GROUP")
    redrive.add_argument(
        "--id", dest="ids", action="append", metavar="ID", help="only this message (repeat)"
    )
    prune = sub.add_parser(
        "prune",
        help="delete handled messages older than an age",
        description="Delete deliveries handled more than --older-than ago, then the messages "
        "every group has handled (or that no group reads) published before then. Dead letters "
        "and messages some group has yet to handle are kept; a dedup id is free again once "
        "its message is gone.",
    )
    prune.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 7d, 12h")
    for parser, handler in (
        (topics, list_topics),
        (groups, list_groups),
        (dlq, dead_letters),
        (redrive, redrive_dead_letters),
        (prune, prune_messages),
    ):
        add_db_option(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=handler)


def list_topics(args: argparse.Namespace) -> int:
    from rich.table import Table

    topics = _steer(args, lambda app: app.store.topics(), read_only=True)
    if args.json:
        _print_json(
            [
                {
                    "topic": t.topic,
                    "messages": t.messages,
                    "groups": list(t.groups),
                    "oldest": t.oldest,
                }
                for t in topics
            ]
        )
        return 0
    table = Table(title=f"{len(topics)} topic(s)")
    for column in ("topic", "messages", "groups", "oldest (UTC)"):
        table.add_column(column)
    for t in topics:
        table.add_row(t.topic, str(t.messages), ", ".join(t.groups) or "-", _when(t.oldest))
    _console().print(table)
    return 0


def list_groups(args: argparse.Namespace) -> int:
    import time

    from rich.table import Table

    groups = _steer(args, lambda app: app.store.groups(), read_only=True)
    now = time.time()

    def lag(oldest: float | None) -> float:
        return 0.0 if oldest is None else round(max(0.0, now - oldest), 3)

    if args.json:
        _print_json(
            [
                {
                    "group": g.group,
                    "topic": g.topic,
                    "waiting": g.ready,
                    "handled": g.handled,
                    "dead": g.dead,
                    "lag_seconds": lag(g.oldest_ready),
                }
                for g in groups
            ]
        )
        return 0
    table = Table(title=f"{len(groups)} group(s)")
    for column in ("group", "topic", "waiting", "handled", "dead", "lag (s)"):
        table.add_column(column)
    for g in groups:
        table.add_row(
            g.group, g.topic, str(g.ready), str(g.handled), str(g.dead), f"{lag(g.oldest_ready):g}"
        )
    _console().print(table)
    return 0


def dead_letters(args: argparse.Namespace) -> int:
    from rich.table import Table

    letters = _steer(args, lambda app: app.dead_letters(args.group, args.limit), read_only=True)
    if args.each:
        rows = [
            {
                "id": d.id,
                "group": d.group,
                "topic": d.message.topic,
                "key": d.message.key,
                "attempts": d.attempts,
                "failed_at": d.failed_at,
                "error": d.fingerprint,
                "payload": d.message.payload,
            }
            for d in letters
        ]
        if args.json:
            _print_json(rows)
            return 0
        table = Table(title=f"{len(rows)} dead letter(s)")
        for column in ("id", "group", "topic", "key", "attempts", "failed (UTC)", "error"):
            table.add_column(column)
        for r in rows:
            table.add_row(
                r["id"],
                r["group"],
                r["topic"],
                r["key"] or "-",
                str(r["attempts"]),
                _when(r["failed_at"]),
                _short(r["error"], 70),
            )
        _console().print(table)
        return 0
    triage = _triage(letters)
    if args.json:
        _print_json(triage)
        return 0
    table = Table(title=f"{len(letters)} dead letter(s) in {len(triage)} kind(s) of failure")
    for column in ("group", "count", "error", "first (UTC)", "last (UTC)", "e.g. id"):
        table.add_column(column)
    for t in triage:
        table.add_row(
            t["group"],
            str(t["count"]),
            _short(t["fingerprint"], 70),
            _when(t["first_failed_at"]),
            _when(t["last_failed_at"]),
            t["ids"][0],
        )
    _console().print(table)
    return 0


def _triage(letters: list[Any]) -> list[dict[str, Any]]:
    """Dead letters grouped by (group, fingerprint), most frequent first."""
    kinds: dict[tuple[str, str], list[Any]] = {}
    for d in letters:
        kinds.setdefault((d.group, d.fingerprint), []).append(d)
    return [
        {
            "group": group,
            "fingerprint": fingerprint,
            "count": len(found),
            "first_failed_at": min(d.failed_at for d in found),
            "last_failed_at": max(d.failed_at for d in found),
            "ids": [d.id for d in found],
        }
        for (group, fingerprint), found in sorted(
            kinds.items(), key=lambda item: (-len(item[1]), item[0])
        )
    ]


def redrive_dead_letters(args: argparse.Namespace) -> int:
    moved = _steer(args, lambda app: app.redrive_dead_letters(args.group, args.ids))
    if args.json:
        _print_json({"group": args.group, "redriven": moved})
    else:
        print(f"handed {moved} dead letter(s) back to group {args.group}")
    if args.ids and moved < len(args.ids):
        raise CliError(
            f"only {moved} of the {len(args.ids)} id(s) named were dead letters of group "
            f"{args.group} (list them with `sagaway messages dlq --group {args.group} --each`)"
        )
    return 0


def prune_messages(args: argparse.Namespace) -> int:
    import time

    age = age_seconds(args.older_than, "the time since a message was handled")
    count = _steer(args, lambda app: app.store.prune_messages(time.time() - age))
    if args.json:
        _print_json({"deleted": count, "older_than": args.older_than, "older_than_seconds": age})
    else:
        print(f"deleted {count} message(s) handled over {args.older_than} ago")
    return 0
