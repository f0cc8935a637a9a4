"""`sagaway alarms`: check an alarms.yaml, replay the past through it, or watch live.

Alarms read log files (--logs), the engine's metrics in the store (--db) and, for composite
children `slo:<slo>:<severity>`, ALB access logs (--alb or slos.alb in the config).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sagaway.cli import CliError, seconds, whole_number
from sagaway.cli.alarm_inputs import (
    add_source_options,
    open_engine,
    parse_time,
    require_logs,
    slo_alerts,
    unmatched_notes,
)

EXTRA_PERIODS = whole_number(0, 10_000)
GRACE = seconds(3600, above=False)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `alarms` command group."""
    parser = subparsers.add_parser(
        "alarms",
        help="alarms on logs, the engine's own metrics and SLOs, with notifications",
        description="Metric filters, alarms on logs and on the engine's own metrics, "
        "composite alarms with SLO burn-rate children, and notifications.",
    )
    commands = parser.add_subparsers(dest="alarms_command", metavar="ACTION")
    commands.required = True

    check = commands.add_parser("check", help="validate an alarms.yaml and summarise it")
    check.add_argument("--config", required=True, help="path to alarms.yaml")
    check.add_argument(
        "--db",
        metavar="URL",
        help="also open this store and warn about alarms on engine metrics whose labels "
        "match nothing stored (a misspelt saga name would never alarm)",
    )
    check.set_defaults(handler=_check)

    replay = commands.add_parser(
        "replay",
        help="evaluate the past (logs, stored engine metrics, ALB logs) and print the timeline",
    )
    replay.add_argument("--config", required=True, help="path to alarms.yaml")
    add_source_options(replay, logs_help="log file (repeatable; needed by alarms on filters)")
    replay.add_argument(
        "--from",
        dest="start",
        metavar="ISO",
        help="first evaluation at the end of the period holding this time (default: the "
        "oldest data)",
    )
    replay.add_argument(
        "--to", dest="end", metavar="ISO", help="last evaluation (default: the newest data)"
    )
    replay.add_argument("--json", action="store_true", help="print one JSON document")
    replay.add_argument(
        "--notify", action="store_true", help="also send the notifications (default: only print)"
    )
    replay.add_argument(
        "--extra-periods",
        type=EXTRA_PERIODS,
        default=0,
        metavar="N",
        help="keep evaluating N periods after the end (to see recovery or missing data; "
        f"{EXTRA_PERIODS.span})",
    )
    replay.add_argument(
        "--rejects", help="write lines set aside (undated, too old, not valid JSON) to this file"
    )
    replay.set_defaults(handler=_replay)

    watch = commands.add_parser(
        "watch", help="tail logs, read the store, evaluate every period and send notifications"
    )
    watch.add_argument("--config", required=True, help="path to alarms.yaml")
    add_source_options(
        watch, logs_help="log file to tail (repeatable; needed by alarms on filters)"
    )
    watch.add_argument(
        "--from-start", action="store_true", help="read what the log files already hold first"
    )
    watch.add_argument(
        "--from",
        dest="start",
        metavar="ISO",
        help="catch up first: evaluate (and notify) every period since this time, then go on "
        "live; implies --from-start",
    )
    watch.add_argument(
        "--grace",
        type=GRACE,
        default=None,
        metavar="SECONDS",
        help=f"wait this long after a period ends before evaluating it ({GRACE.span}; late "
        "lines; default 2, 5 with alarms on engine metrics, whose processes flush every 2 s)",
    )
    watch.add_argument(
        "--poll", type=seconds(60), default=0.25, metavar="SECONDS", help=argparse.SUPPRESS
    )
    watch.add_argument("--json", action="store_true", help="print events as JSON lines")
    watch.add_argument("--rejects", help="write lines set aside to this file")
    watch.set_defaults(handler=_watch)


def _load(path: str):
    from sagaway.errors import ConfigurationError
    from sagaway.observe.alarms import load_config

    try:
        config = load_config(path)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    if not config.alarms and not config.composites and not config.gray_failures:
        raise CliError(
            f"{path}: defines no alarm: add an `alarms:` list (a filter, engine metric or SLO "
            "source and a threshold each), see docs/alarms.md"
        )
    return config


def _check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    print(f"{config.source}: OK (evaluation period {config.period}s)")
    for name, metric_filter in config.filters.items():
        print(f"  filter     {name}: {metric_filter.pattern.text}  -> {metric_filter.value_spec}")
    for name, alarm in config.alarms.items():
        ref = config.engine.get(name)
        metric = alarm.metric if ref is None else f"engine metric {ref.describe()}"
        print(f"  alarm      {name}: {metric} {alarm.describe()}")
    for name in config.alarm_set.order:
        print(f"  composite  {name}: {config.composites[name].rule}")
    slos = config.slo_alerts
    for name in config.alarm_set.sources:
        if slos is not None and name in slos.sources:
            print(f"  slo alert  {name}: {slos.sources[name].describe()}")
        elif name in config.gray_failures:
            print(f"  gray       {name}: {config.gray_failures[name].describe()}")
        else:
            print(f"  source     {name} (state supplied from outside)")
    if slos is not None:
        lag = f", evaluated {slos.lag / 60:g} min behind" if slos.lag else ""
        paths = ", ".join(slos.paths) or "none: give --alb"
        print(f"  slo logs   {paths}{lag}")
    for notifier in config.notifiers.values():
        print(f"  notifier   {notifier.describe()}")
    if config.reads_engine and not args.db:
        default = "store: not resolved here" if config.store_error else "$SAGAWAY_DB, ./sagaway.db"
        named = config.store or default
        print(f"  store      {named} (not opened: give --db URL to check the labels against it)")
    elif config.reads_engine:
        store, reader = open_engine(config, args.db, cache=False)
        try:
            notes = unmatched_notes(config, reader)
            print(f"  store      {store.description}")
        finally:
            store.close()
        for note in notes:
            print(f"warning: {note}")
    return 0


class _Rejects:
    """Lines set aside, written with the reason (or only counted when no file is given)."""

    def __init__(self, path: str | None) -> None:
        self.count = 0
        self.path = path
        try:
            self.handle = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"cannot write rejected lines to {path}: {exc.strerror}") from None

    def __call__(self, line: str, why: str) -> None:
        self.count += 1
        if self.handle is not None:
            try:
                self.handle.write(json.dumps({"reason": why, "line": line}) + "\n")
            except OSError as exc:  # a full disk: one line, not a traceback
                raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> CliError:
        return CliError(f"cannot write rejected lines to {self.path}: {exc.strerror}")

    def close(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            try:
                handle.close()
            except OSError as exc:
                raise self._failed(exc) from None


def _dispatcher(config, stream):
    from sagaway.observe.alarms import Dispatcher

    def report(failure) -> None:
        print(
            f"sagaway: notification {failure.notification.id} NOT delivered to "
            f"{failure.notifier} after {failure.attempts} tries: {failure.error}",
            file=stream,
            flush=True,
        )

    return Dispatcher(
        config.notifiers, retry=config.retry, dead_letter=config.dead_letter, on_failure=report
    )


def _filter_stats(config) -> dict[str, Any]:
    # Lines a JSON filter's pre-check rules out are never parsed, so the malformed count is a
    # lower bound and is named as one (docs/alarms.md, "Log lines").
    return {
        name: {
            "matched": f.matched,
            "value_errors": f.value_errors,
            **(
                {"malformed_json_at_least": f.pattern.unparsable}
                if f.pattern.kind == "json"
                else {}
            ),
        }
        for name, f in config.filters.items()
    }


def _replay(args: argparse.Namespace) -> int:
    from sagaway.observe.alarms import Monitor

    config = _load(args.config)
    require_logs(config, args.logs)
    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    if start is not None and end is not None and end <= start:
        raise CliError(f"--to {args.end} is not after --from {args.start}")
    slos = slo_alerts(config, args.alb)
    store, reader = open_engine(config, args.db, cache=True)
    rejects = _Rejects(args.rejects)
    dispatcher = _dispatcher(config, sys.stderr) if args.notify else None
    monitor = Monitor(config, dispatcher, on_reject=rejects, engine=reader)
    notes: list[str] = []
    first_tick: float | None = None
    try:
        for path in args.logs or []:
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    for raw in handle:
                        line = raw.rstrip("\r\n")
                        if line.strip():
                            monitor.feed(line)
            except OSError as exc:
                raise CliError(f"cannot read {path}: {exc.strerror}") from None
        if slos is not None:
            try:
                slos.read(None if start is None else start - slos.lookback)
            except (OSError, ValueError) as exc:
                raise CliError(f"SLO alerts: {exc}") from None
        if reader is not None:
            notes += unmatched_notes(config, reader)
        first, last = _data_span(config, monitor, reader, slos)
        start = first if start is None else start
        if end is None and last is not None:
            end = (last // monitor.tick + 1) * monitor.tick
        if start is None or end is None:
            notes.append("nothing to evaluate: no log line, stored bucket or ALB entry was found")
        else:
            end += args.extra_periods * monitor.tick
            if end > time.time():
                notes.append("the last evaluations end after now: data for them may still arrive")
            monitor.start_at(start)
            first_tick = monitor.next_tick
            monitor.evaluate_until(end)
    finally:
        if dispatcher is not None:
            dispatcher.close(timeout=120)
        if slos is not None:
            slos.close()
        if store is not None:
            store.close()
        rejects.close()  # last: on a full disk it raises the one-line error
    failures = dispatcher.failures if dispatcher is not None else []
    report = {
        "config": config.source,
        "period": monitor.tick,
        "range": {
            "from": _iso(first_tick if monitor.evaluated_until is not None else None),
            "to": _iso(monitor.evaluated_until),
        },
        "lines": monitor.stats.to_dict(),
        "filters": _filter_stats(config),
        "store": None if store is None else store.description,
        "alb": None if slos is None else slos.stats.to_dict(),
        "notes": notes,
        "timeline": [t.to_dict() for t in monitor.transitions],
        "notifications": [n.to_dict() for n in monitor.notifications],
        "final_states": {name: state.value for name, state in monitor.states.items()},
        "delivery": None
        if dispatcher is None
        else {"sent": dispatcher.sent, "failed": [f.to_dict() for f in failures]},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_replay(report, bool(args.logs))
    return 1 if failures else 0


def _iso(timestamp: float | None) -> str | None:
    from sagaway.observe.alarms import iso_time

    return None if timestamp is None else iso_time(timestamp)


def _data_span(config, monitor, reader, slos) -> tuple[float | None, float | None]:
    """The oldest and newest time any source has data for."""
    firsts = [monitor.stats.first]
    lasts = [monitor.stats.last]
    if reader is not None:
        from sagaway.observe.alarms import EngineMetricReadError

        try:
            first, last = reader.span([ref.metric for ref in config.engine.values()])
        except EngineMetricReadError as exc:
            raise CliError(str(exc)) from None
        firsts.append(first)
        lasts.append(last)
    if slos is not None:
        firsts.append(slos.stats.first)
        lasts.append(slos.stats.last)
    found_first = [t for t in firsts if t is not None]
    found_last = [t for t in lasts if t is not None]
    return min(found_first, default=None), max(found_last, default=None)


def _print_replay(report: dict[str, Any], logs: bool) -> None:
    lines = report["lines"]
    if logs:
        print(
            f"{lines['read']} lines: {lines['dated']} dated, {lines['undated']} undated "
            f"(set aside), {lines['late']} late"
        )
    for name, stats in report["filters"].items():
        malformed = stats.get("malformed_json_at_least")
        print(
            f"  filter {name}: {stats['matched']} matched, {stats['value_errors']} value errors"
            + ("" if malformed is None else f", at least {malformed} malformed JSON")
        )
    if report["store"]:
        print(f"store: {report['store']}")
    if report["alb"]:
        alb = report["alb"]
        aside = f" (set aside in {alb['quarantine']})" if alb["malformed"] else ""
        print(
            f"ALB logs: {alb['files']} files, {alb['lines']} lines: {alb['parsed']} parsed, "
            f"{alb['malformed']} malformed{aside}"
        )
    for note in report["notes"]:
        print(f"note: {note}")
    print("timeline:")
    for t in report["timeline"]:
        change = f"{t['previous_state']} -> {t['state']}"
        print(f"  {t['timestamp']}  {t['alarm']}: {change}  {t['reason']}")
    print("notifications:")
    for n in report["notifications"]:
        print(f"  {n['timestamp']}  {n['summary']}")
    if report["delivery"] is not None:
        print(
            f"delivered: {report['delivery']['sent']}; failed: {len(report['delivery']['failed'])}"
        )


def _watch(args: argparse.Namespace) -> int:
    from sagaway.observe.alarms import FileTail, Monitor

    config = _load(args.config)
    require_logs(config, args.logs)
    start = parse_time(args.start, "--from")
    slos = slo_alerts(config, args.alb)
    store, reader = open_engine(config, args.db, cache=False)
    grace = args.grace if args.grace is not None else (5.0 if config.reads_engine else 2.0)
    rejects = _Rejects(args.rejects)
    dispatcher = _dispatcher(config, sys.stderr)
    monitor = Monitor(config, dispatcher, on_reject=rejects, engine=reader)
    stop = threading.Event()
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from_start = args.from_start or start is not None
    logs = args.logs or []
    tails = [FileTail(path, from_start=from_start) for path in logs]
    missing = [str(t.path) for t in tails if not Path(t.path).exists()]
    if missing:
        print(f"sagaway: waiting for {', '.join(missing)} to appear", file=sys.stderr)
    if reader is not None:
        for note in unmatched_notes(config, reader):
            print(f"sagaway: warning: {note}", file=sys.stderr, flush=True)
    slo_problem = _SloProblem()
    emitted = 0
    try:
        if slos is not None:
            slo_problem.read(slos, (start or time.time()) - slos.lookback)
        if from_start:
            for tail in tails:
                for line in tail.read_lines():
                    if line.strip():
                        monitor.feed(line)
        monitor.start_at(start if start is not None else time.time())
        print(
            f"watching {_watched(logs, store, slos)} (period {monitor.tick}s); Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        while not stop.is_set():
            for tail in tails:
                for line in tail.read_lines():
                    if line.strip():
                        monitor.feed(line, arrival=time.time())
            due = time.time() - grace
            if monitor.next_tick is not None:
                # Catching up (--from) goes a bounded number of periods at a time, so that
                # Ctrl-C and SIGTERM are honoured within a moment.
                due = min(due, monitor.next_tick + _CATCH_UP * monitor.tick)
            if slos is not None and monitor.next_tick is not None and monitor.next_tick <= due:
                # ALB delivers files every five minutes; read the new ones once per period.
                slo_problem.read(slos, due - slos.lookback)
                slos.trim(due)
            for change in monitor.evaluate_until(due):
                _emit(args.json, "transition", change.to_dict())
            for note in monitor.notifications[emitted:]:
                _emit(args.json, "notification", note.to_dict())
            emitted = len(monitor.notifications)
            if monitor.next_tick is None or monitor.next_tick > time.time() - grace:
                stop.wait(args.poll)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        for tail in tails:
            tail.close()
        dispatcher.close(timeout=10)
        if slos is not None:
            slos.close()
        if store is not None:
            store.close()
        rejects.close()  # last: on a full disk it raises the one-line error
    summary = {
        "lines": monitor.stats.to_dict(),
        "rotations": sum(t.rotations for t in tails),
        "alb": None if slos is None else slos.stats.to_dict(),
        "delivery": {"sent": dispatcher.sent, "failed": len(dispatcher.failures)},
    }
    print(f"stopped: {json.dumps(summary)}", file=sys.stderr, flush=True)
    return 0


_CATCH_UP = 500  # periods evaluated per turn of the watch loop while catching up


class _SloProblem:
    """Reads new access logs for `watch`; says once on stderr why they cannot be read, and
    when they can again (the SLO alerts are INSUFFICIENT_DATA meanwhile)."""

    def __init__(self) -> None:
        self.last: str | None = None

    def read(self, slos, not_before: float) -> None:
        try:
            slos.read(not_before)
        except (OSError, ValueError) as exc:
            if str(exc) != self.last:
                print(f"sagaway: SLO alerts: {exc}", file=sys.stderr, flush=True)
            self.last = str(exc)
            return
        if self.last is not None:
            print("sagaway: SLO alerts: access logs readable again", file=sys.stderr, flush=True)
        self.last = None


def _watched(logs: list[str], store, slos) -> str:
    parts = list(logs)
    if store is not None:
        parts.append(f"engine metrics in {store.description}")
    if slos is not None:
        parts.append(f"SLO alerts from {', '.join(slos.paths)}")
    return ", ".join(parts)


def _emit(as_json: bool, kind: str, payload: dict[str, Any]) -> None:
    if as_json:
        print(json.dumps({"event": kind, **payload}), flush=True)
    elif kind == "transition":
        print(
            f"{payload['timestamp']}  {payload['alarm']}: {payload['previous_state']} -> "
            f"{payload['state']}  {payload['reason']}",
            flush=True,
        )
    else:
        print(f"{payload['timestamp']}  notify: {payload['summary']}", flush=True)
