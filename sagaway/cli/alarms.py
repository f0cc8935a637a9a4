"""`sagaway alarms`: check an alarms.yaml, replay a past log through it, or watch logs live."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sagaway.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `alarms` command group."""
    parser = subparsers.add_parser(
        "alarms",
        help="metric filters, alarms and notifications from log files",
        description="Metric filters, alarms, composite alarms and notifications over logs.",
    )
    commands = parser.add_subparsers(dest="alarms_command", metavar="ACTION")
    commands.required = True

    check = commands.add_parser("check", help="validate an alarms.yaml and summarise it")
    check.add_argument("--config", required=True, help="path to alarms.yaml")
    check.set_defaults(handler=_check)

    replay = commands.add_parser(
        "replay", help="evaluate past logs offline and print the state timeline"
    )
    replay.add_argument("--config", required=True, help="path to alarms.yaml")
    replay.add_argument("--logs", required=True, action="append", help="log file (repeatable)")
    replay.add_argument("--json", action="store_true", help="print one JSON document")
    replay.add_argument(
        "--notify", action="store_true", help="also send the notifications (default: only print)"
    )
    replay.add_argument(
        "--extra-periods",
        type=int,
        default=0,
        metavar="N",
        help="keep evaluating N periods after the last line (to see recovery or missing data)",
    )
    replay.add_argument("--rejects", help="write lines set aside (undated, too old) to this file")
    replay.set_defaults(handler=_replay)

    watch = commands.add_parser(
        "watch", help="tail logs, evaluate every period and send notifications"
    )
    watch.add_argument("--config", required=True, help="path to alarms.yaml")
    watch.add_argument("--logs", required=True, action="append", help="log file (repeatable)")
    watch.add_argument(
        "--from-start", action="store_true", help="read what the files already hold first"
    )
    watch.add_argument(
        "--grace",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="wait this long after a period ends before evaluating it (late lines)",
    )
    watch.add_argument(
        "--poll", type=float, default=0.25, metavar="SECONDS", help=argparse.SUPPRESS
    )
    watch.add_argument("--json", action="store_true", help="print events as JSON lines")
    watch.add_argument("--rejects", help="write lines set aside to this file")
    watch.set_defaults(handler=_watch)


def _load(path: str):
    from sagaway.observe.alarm_config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    print(f"{config.source}: OK (evaluation period {config.period}s)")
    for name, metric_filter in config.filters.items():
        print(f"  filter     {name}: {metric_filter.pattern.text}  -> {metric_filter.value_spec}")
    for name, alarm in config.alarms.items():
        print(f"  alarm      {name}: {alarm.metric} {alarm.describe()}")
    for name in config.alarm_set.order:
        print(f"  composite  {name}: {config.composites[name].rule}")
    for name in config.alarm_set.sources:
        print(f"  source     {name} (state supplied from outside)")
    for notifier in config.notifiers.values():
        print(f"  notifier   {notifier.describe()}")
    return 0


class _Rejects:
    """Lines set aside, written with the reason (or only counted when no file is given)."""

    def __init__(self, path: str | None) -> None:
        self.count = 0
        try:
            self.handle = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"cannot write rejected lines to {path}: {exc.strerror}") from None

    def __call__(self, line: str, why: str) -> None:
        self.count += 1
        if self.handle is not None:
            self.handle.write(json.dumps({"reason": why, "line": line}) + "\n")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _dispatcher(config, stream):
    from sagaway.observe.dispatch import Dispatcher

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
    from sagaway.observe.monitor import Monitor

    config = _load(args.config)
    rejects = _Rejects(args.rejects)
    dispatcher = _dispatcher(config, sys.stderr) if args.notify else None
    monitor = Monitor(config, dispatcher, on_reject=rejects)
    try:
        for path in args.logs:
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    for raw in handle:
                        line = raw.rstrip("\r\n")
                        if line.strip():
                            monitor.feed(line)
            except OSError as exc:
                raise CliError(f"cannot read {path}: {exc.strerror}") from None
        if monitor.stats.last is not None:
            last_period_end = (monitor.stats.last // monitor.tick + 1) * monitor.tick
            monitor.evaluate_until(last_period_end + args.extra_periods * monitor.tick)
    finally:
        rejects.close()
        if dispatcher is not None:
            dispatcher.close(timeout=120)
    failures = dispatcher.failures if dispatcher is not None else []
    report = {
        "config": config.source,
        "period": monitor.tick,
        "lines": monitor.stats.to_dict(),
        "filters": _filter_stats(config),
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
        _print_replay(report)
    return 1 if failures else 0


def _print_replay(report: dict[str, Any]) -> None:
    lines = report["lines"]
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
    from sagaway.observe.logsource import FileTail
    from sagaway.observe.monitor import Monitor

    config = _load(args.config)
    rejects = _Rejects(args.rejects)
    dispatcher = _dispatcher(config, sys.stderr)
    monitor = Monitor(config, dispatcher, on_reject=rejects)
    stop = threading.Event()
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tails = [FileTail(path, from_start=args.from_start) for path in args.logs]
    missing = [str(t.path) for t in tails if not Path(t.path).exists()]
    if missing:
        print(f"sagaway: waiting for {', '.join(missing)} to appear", file=sys.stderr)
    emitted = 0
    try:
        if args.from_start:
            for tail in tails:
                for line in tail.read_lines():
                    if line.strip():
                        monitor.feed(line)
        monitor.start_at(time.time())
        print(
            f"watching {', '.join(args.logs)} (period {monitor.tick}s); Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        while not stop.is_set():
            for tail in tails:
                for line in tail.read_lines():
                    if line.strip():
                        monitor.feed(line, arrival=time.time())
            for change in monitor.evaluate_until(time.time() - args.grace):
                _emit(args.json, "transition", change.to_dict())
            for note in monitor.notifications[emitted:]:
                _emit(args.json, "notification", note.to_dict())
            emitted = len(monitor.notifications)
            stop.wait(args.poll)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        for tail in tails:
            tail.close()
        dispatcher.close(timeout=10)
        rejects.close()
    summary = {
        "lines": monitor.stats.to_dict(),
        "rotations": sum(t.rotations for t in tails),
        "delivery": {"sent": dispatcher.sent, "failed": len(dispatcher.failures)},
    }
    print(f"stopped: {json.dumps(summary)}", file=sys.stderr, flush=True)
    return 0


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
