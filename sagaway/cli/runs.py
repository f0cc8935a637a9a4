"""`sagaway runs ...`: list, inspect and steer runs in a store."""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from sagaway.cli import CliError, age_seconds, whole_number
from sagaway.store.base import SETTLED, STATUSES, TERMINAL

LIMIT = whole_number(1, 100_000)
POSITION = whole_number(0, 1_000_000)


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """The `--db` option shared by commands that open a store."""
    parser.add_argument(
        "--db",
        metavar="URL",
        help="store URL or SQLite path (default: $SAGAWAY_DB, else ./sagaway.db)",
    )


def register(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="list, inspect, signal, cancel, redrive and prune runs")
    sub = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    sub.required = True

    listing = sub.add_parser("list", help="list runs, newest first")
    add_db_option(listing)
    listing.add_argument("--status", choices=STATUSES, help="only runs with this status")
    listing.add_argument("--saga", help="only runs of this saga")
    listing.add_argument(
        "--parent",
        metavar="ID",
        help="only the child runs this run started (ctx.map over a saga, ctx.child), by item",
    )
    listing.add_argument(
        "--limit", type=LIMIT, default=50, help=f"at most this many ({LIMIT.span}; default 50)"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=list_runs)

    show = sub.add_parser("show", help="show a run and its journal")
    add_db_option(show)
    show.add_argument("run_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print JSON instead of tables")
    show.set_defaults(handler=show_run)

    signal = sub.add_parser("signal", help="send a signal to a run")
    add_db_option(signal)
    signal.add_argument("run_id", metavar="ID")
    signal.add_argument("name", metavar="SIGNAL")
    signal.add_argument(
        "payload", metavar="JSON", nargs="?", default="null", help="payload, e.g. '{\"a\": 1}'"
    )
    add_json_option(signal)
    signal.set_defaults(handler=signal_run)

    cancel = sub.add_parser("cancel", help="cancel a run: compensate what it did")
    add_db_option(cancel)
    cancel.add_argument("run_id", metavar="ID")
    add_json_option(cancel)
    cancel.set_defaults(handler=cancel_run)

    redrive = sub.add_parser("redrive", help="resume a failed run where it stopped")
    add_db_option(redrive)
    redrive.add_argument("run_id", metavar="ID")
    add_json_option(redrive)
    redrive.set_defaults(handler=redrive_run)

    fork = sub.add_parser(
        "fork",
        help="start a new run of a run's input, reusing its steps before a position",
        description="Start a new run of the same saga and input that reuses the run's "
        "journal before position --from-step (those steps are not run again) and runs the "
        "rest anew. The run must have ended.",
    )
    add_db_option(fork)
    fork.add_argument("run_id", metavar="ID")
    fork.add_argument(
        "--from-step",
        required=True,
        type=POSITION,
        metavar="N",
        help=f"journal position to run anew from ({POSITION.span}; 0: all of it; see `runs show`)",
    )
    fork.add_argument("--key", help="an idempotency key: forking again with it does nothing")
    add_json_option(fork)
    fork.set_defaults(handler=fork_run)

    check = sub.add_parser(
        "check",
        help="deploy gate: would any unfinished run diverge on this code? (exit 1 if so)",
        description="Replay every unfinished run's journal (pending, running, waiting, "
        "compensating, and failed runs a redrive would replay) against the sagas of "
        "MODULE:ATTR as importable now, running no step body and writing nothing, and list "
        "each run that would fail with non-determinism: where, what its journal records and "
        "what the code does instead. Exit status 1 if any would, 0 if none.",
    )
    check.add_argument("target", metavar="MODULE:ATTR", help="the App, e.g. shop.checkout:app")
    add_db_option(check)
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=check_runs)

    prune = sub.add_parser(
        "prune",
        help="delete runs that ended long ago, with their journals",
        description="Delete runs that ended more than --older-than ago (by default those "
        "that succeeded, compensated or were cancelled; failed runs wait for a redrive and are "
        "kept unless named), with their journals, signals and events. A key whose run was "
        "deleted is free again.",
    )
    add_db_option(prune)
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="e.g. 30d, 12h, 2w: time since it ended (positive)",
    )
    prune.add_argument(
        "--status",
        action="append",
        choices=sorted(TERMINAL),
        help="only runs that ended so (repeat for several; default: all but failed)",
    )
    add_json_option(prune)
    prune.set_defaults(handler=prune_runs)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """`--json` on a command that prints one line of what it did."""
    parser.add_argument("--json", action="store_true", help="print JSON")


def open_app(url: str | None, read_only: bool = False) -> Any:
    """An App on an existing store with sagaway's schema (no sagas needed to inspect or
    steer runs); `read_only` opens it so that nothing is written or locked."""
    from sagaway import App
    from sagaway.errors import SagawayError
    from sagaway.store import open_store

    try:
        store = open_store(url, create=False, read_only=read_only)
    except SagawayError as exc:
        raise CliError(str(exc)) from None
    return App(store=store, record_metrics=not read_only)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _console() -> Any:
    """A rich console; when piped, wide enough that ids and times are not wrapped."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short(text: Any, width: int = 60) -> str:
    value = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    return value if len(value) <= width else value[: width - 1] + "…"


def _steer(args: argparse.Namespace, action: Any, read_only: bool = False) -> Any:
    from sagaway.errors import SagawayError

    app = open_app(args.db, read_only)
    try:
        return action(app)
    except SagawayError as exc:
        raise CliError(str(exc)) from None
    finally:
        app.close()


def list_runs(args: argparse.Namespace) -> int:
    from rich.table import Table

    def gather(app: Any) -> tuple[list[Any], int, dict[tuple[str, str], int]]:
        # How many runs hold a slot of each key that has a queue: "3/3 held".
        held = {(q.saga, q.key): q.held for q in app.store.flow_queues(saga=args.saga)}
        if args.parent is not None:
            return (*_children(app, args), held)
        records = app.store.list_runs(status=args.status, saga=args.saga, limit=args.limit)
        if len(records) < args.limit:
            return records, len(records), held
        counts = app.store.count_runs(saga=args.saga)
        return records, counts.get(args.status, 0) if args.status else sum(counts.values()), held

    records, total, held = _steer(args, gather, read_only=True)
    items = {r.id: item for r, item in records} if args.parent is not None else {}
    records = [r for r, _ in records] if args.parent is not None else records
    if args.json:
        _print_json(
            [
                {
                    "id": r.id,
                    "saga": r.saga,
                    "key": r.key,
                    "status": r.status,
                    "created_at": r.created_at,
                    "updated_at": r.updated_at,
                    "flow": r.flow.to_doc() if r.flow else None,
                    **({"parent_id": r.parent_id, "item": items[r.id]} if items else {}),
                }
                for r in records
            ]
        )
        return 0
    title = (
        f"showing {len(records):,} of {total:,} (use --limit)"
        if total > len(records)
        else f"{len(records)} run(s)"
    )
    if args.parent is not None:
        title = f"children of run {args.parent}: {title}"
    table = Table(title=title, show_lines=False)
    columns = ("id", "saga", "key", "status", "created (UTC)", "updated (UTC)")
    flows = any(r.flow for r in records)  # a column for sagas with a concurrency limit
    for column in (("item",) if items else ()) + columns + (("flow control",) if flows else ()):
        table.add_column(column)
    for r in records:
        row = (r.id, r.saga, r.key or "-", r.status, _when(r.created_at), _when(r.updated_at))
        flow = (
            (r.flow.describe(held.get((r.saga, r.flow.key))) if r.flow else "-",) if flows else ()
        )
        table.add_row(*((items[r.id],) if items else ()), *row, *flow)
    _console().print(table)
    return 0


def _children(app: Any, args: argparse.Namespace) -> tuple[list[Any], int]:
    """(record, "position.index") of the children of `--parent`, and how many there are."""
    app.get(args.parent)  # RunNotFound for a wrong id
    found = app.store.children(args.parent, status=args.status)
    if args.saga is not None:
        found = [child for child in found if child.run.saga == args.saga]
    shown = [(child.run, f"{child.position}.{child.index}") for child in found[: args.limit]]
    return shown, len(found)


def _in_order_run(steps: list[Any]) -> list[Any]:
    """Forward entries by position, then compensations in the order they ran (the journal
    keys them by the position of the step they undo, which unwinding visits backwards)."""
    forward = [s for s in steps if s.phase != "compensation"]
    undone = [s for s in steps if s.phase == "compensation"]
    return forward + sorted(undone, key=lambda s: (s.started_at, -s.position))


def show_run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from sagaway.engine import parked_step
    from sagaway.store.fanout import CHILD_WAIT

    def gather(app: Any) -> tuple[Any, Any, Any, Any, dict[str, int]]:
        run = app.get(args.run_id)
        record = run.refresh()
        held = {q.key: q.held for q in app.store.flow_queues(saga=record.saga)}
        return record, run.steps, run.events, app.store.pending_signals(record.id), held

    record, steps, events, signals, held = _steer(args, gather, read_only=True)
    steps = _in_order_run(steps)
    error = json.loads(record.error) if record.error else None
    if args.json:
        _print_json(
            {
                "id": record.id,
                "saga": record.saga,
                "key": record.key,
                "status": record.status,
                "flow": record.flow.to_doc() if record.flow else None,
                "input": json.loads(record.input),
                "result": json.loads(record.result) if record.result else None,
                "error": error,
                "steps": [dataclasses.asdict(s) for s in steps],
                "pending_signals": [
                    {"name": g.name, "payload": json.loads(g.payload), "sent_at": g.sent_at}
                    for g in signals
                ],
                "events": [
                    {"at": e.at, "kind": e.kind, "data": json.loads(e.data)} for e in events
                ],
            }
        )
        return 0
    console = _console()
    console.print(
        f"[bold]run {record.id}[/bold]  saga [bold]{record.saga}[/bold]  "
        f"status [bold]{record.status}[/bold]"
    )
    console.print(
        f"key {record.key or '-'}   created {_when(record.created_at)}   "
        f"updated {_when(record.updated_at)}   owner {record.owner or '-'}"
    )
    if record.flow is not None:
        console.print(f"flow   {record.flow.describe(held.get(record.flow.key))}")
    console.print(f"input  {_short(json.loads(record.input), 100)}")
    if record.result:
        console.print(f"result {_short(json.loads(record.result), 100)}")
    if error:
        where = f" at step {error.get('step')}" if error.get("step") else ""
        console.print(
            f"[red]error{where} ({error.get('phase', '?')}): "
            f"{error.get('type')}: {error.get('message')}[/red]"
        )
    if record.wait_name and record.wait_name.startswith(CHILD_WAIT) and not record.owner:
        console.print(f"resting until a child run ends (see `runs list --parent {record.id}`)")
    elif record.status == "waiting" and record.wait_name:
        step = parked_step(record.wait_name)
        if step is not None:
            console.print(
                f"parked at step {step!r} (its breaker, rate limit or bulkhead refused) until "
                f"{_when(record.due_at)}, deadline {_when(record.wait_deadline)}"
            )
        else:
            console.print(
                f"waiting for signal {record.wait_name!r} until {_when(record.wait_deadline)}"
            )
    elif record.status == "waiting" and record.due_at:
        console.print(f"sleeping until {_when(record.due_at)}")
    table = Table(title="journal")
    columns = ("pos", "phase", "kind", "name", "status", "started (UTC)", "tries", "ms")
    for column in (*columns, "result / error"):
        table.add_column(column)
    for s in steps:
        outcome = (
            f"{s.error.get('type', '').rsplit('.', 1)[-1]}: {s.error.get('message')}"
            if s.error
            else s.result
        )
        if s.counts is not None:
            outcome = _counted(s.counts) + (f"; {outcome}" if s.error else "")
        table.add_row(
            _position(s),
            s.phase,
            s.kind,
            s.name,
            s.status,
            _when(s.started_at),
            str(s.attempts),
            f"{(s.finished_at - s.started_at) * 1000:.1f}",
            _short(outcome),
        )
    console.print(table)
    for s in steps:
        _print_branches(console, s)
    if signals:
        waiting = Table(title="signals received, not yet taken by a wait")
        for column in ("sent (UTC)", "name", "payload"):
            waiting.add_column(column)
        for g in signals:
            waiting.add_row(_when(g.sent_at), g.name, _short(json.loads(g.payload)))
        console.print(waiting)
    if events:
        log = Table(title="events")
        for column in ("at (UTC)", "kind", "details"):
            log.add_column(column)
        for e in events:
            log.add_row(_when(e.at), e.kind, _short(json.loads(e.data), 400))  # rich wraps it
        console.print(log)
    return 0


def _position(step: Any) -> str:
    return str(step.position) if step.index is None else f"{step.position}.{step.index}"


def _counted(counts: dict[str, int]) -> str:
    """A fan-out's counts in one line."""
    parts = ", ".join(f"{counts[k]} {k}" for k in ("done", "failed", "running", "parked"))
    return f"{counts['items']} items: {parts}"


def _print_branches(console: Any, step: Any, shown: int = 20) -> None:
    """The branches of a fan-out that did not succeed (the first `shown` of them)."""
    from rich.table import Table

    failed = [b for b in step.branches if b.status != "ok"]
    if not failed:
        return
    table = Table(title=f"{step.kind} {step.name} at {step.position}: branches that failed")
    for column in ("item", "kind", "name", "tries", "error"):
        table.add_column(column)
    for b in failed[:shown]:
        error = b.error or {}
        message = f"{error.get('type', '').rsplit('.', 1)[-1]}: {error.get('message')}"
        if b.kind == "child" and isinstance(b.args, dict):
            message = f"run {b.args.get('run')} {b.args.get('status')}: {message}"
        table.add_row(str(b.index), b.kind, b.name, str(b.attempts), _short(message, 120))
    if len(failed) > shown:
        table.caption = f"and {len(failed) - shown} more (see --json)"
    console.print(table)


def signal_run(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"the payload is not valid JSON ({exc.msg} at column {exc.colno}): quote strings "
            """as '"text"', objects as '{"email": "a@example.com"}'"""
        ) from None
    _steer(args, lambda app: app.signal(args.run_id, args.name, payload))
    if args.json:
        _print_json({"run_id": args.run_id, "signal": args.name, "payload": payload})
    else:
        print(f"sent signal {args.name!r} to run {args.run_id}")
    return 0


def cancel_run(args: argparse.Namespace) -> int:
    record = _steer(args, lambda app: app.cancel(args.run_id).record)
    if args.json:
        _print_json({"run_id": args.run_id, "status": record.status, "cancel_requested": True})
    else:
        print(f"run {args.run_id}: cancel requested; it compensates and ends cancelled")
    return 0


def redrive_run(args: argparse.Namespace) -> int:
    record = _steer(args, lambda app: app.redrive(args.run_id).record)
    if args.json:
        _print_json({"run_id": args.run_id, "status": record.status})
    else:
        print(f"run {args.run_id}: redriven, now {record.status}; a worker resumes it")
    return 0


def fork_run(args: argparse.Namespace) -> int:
    record = _steer(args, lambda app: app.fork(args.run_id, args.from_step, key=args.key).record)
    if args.json:
        _print_json({"run_id": record.id, "forked_from": args.run_id, "from_step": args.from_step})
    else:
        print(
            f"run {record.id}: forked from {args.run_id} at position {args.from_step}; "
            "a worker runs it"
        )
    return 0


def prune_runs(args: argparse.Namespace) -> int:
    age = age_seconds(args.older_than, "the time since a run ended")
    statuses = args.status or list(SETTLED)
    count = _steer(args, lambda app: app.prune_runs(age, statuses))
    if args.json:
        _print_json(
            {
                "deleted": count,
                "statuses": statuses,
                "older_than": args.older_than,
                "older_than_seconds": age,
            }
        )
    else:
        print(f"deleted {count} run(s) that ended {', '.join(statuses)} over {args.older_than} ago")
    return 0


def check_runs(args: argparse.Namespace) -> int:
    from rich.table import Table

    from sagaway.cli.worker import load_app
    from sagaway.errors import SagawayError
    from sagaway.store import open_store

    app = load_app(args.target)
    try:
        store = open_store(args.db or app.url, create=False, read_only=True)
    except SagawayError as exc:
        raise CliError(str(exc)) from None
    try:
        checked, found = 0, []
        for _run, divergence in app.check_runs(store):
            checked += 1
            if divergence is not None:
                found.append(divergence)
    finally:
        store.close()
    if args.json:
        _print_json(
            {
                "checked": checked,
                "diverging": [
                    {
                        "run_id": d.run_id,
                        "saga": d.saga,
                        "status": d.status,
                        "position": d.position,
                        "recorded": d.recorded,
                        "found": d.found,
                        "message": d.message,
                    }
                    for d in found
                ],
            }
        )
    elif found:
        table = Table(title=f"{len(found)} of {checked} unfinished run(s) would diverge")
        for column in ("run", "saga", "status", "position", "journal records", "code now does"):
            table.add_column(column)
        for d in found:
            table.add_row(d.run_id, d.saga, d.status, str(d.position), d.recorded, d.found)
        _console().print(table)
    else:
        print(f"{checked} unfinished run(s) checked: none would diverge")
    return 1 if found else 0
