"""`sagaway slo`: SLO reports from load balancer access logs, and Prometheus rules for them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

from sagaway.cli import CliError
from sagaway.cli._output import write_output


def register(commands: argparse._SubParsersAction) -> None:
    """Add `slo report` and `slo rules`."""
    group = commands.add_parser("slo", help="SLOs and error budgets from load balancer logs")
    actions = group.add_subparsers(dest="slo_command", metavar="ACTION")
    actions.required = True

    report = actions.add_parser(
        "report",
        help="error budgets, burn rates and alerts from ALB access logs",
        description="Read Application Load Balancer access logs (.log / .log.gz files or "
        "directories, searched recursively) and report every SLO of the specification.",
    )
    report.add_argument("--config", required=True, help="SLO specification (YAML)")
    report.add_argument(
        "--alb",
        action="append",
        required=True,
        metavar="PATH",
        help="log file or directory (repeat for several)",
    )
    report.add_argument(
        "--at",
        help="evaluation time, ISO 8601 (default: the end of the minute holding the newest "
        "log entry)",
    )
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    report.add_argument(
        "--quarantine",
        default="alb-quarantine.jsonl",
        metavar="FILE",
        help="where malformed lines go (default: %(default)s; it holds this run's lines only and "
        "is removed when there are none)",
    )
    report.set_defaults(handler=run_report)

    rules = actions.add_parser(
        "rules",
        help="Prometheus recording and alerting rules for the same SLOs",
        description="Print Prometheus rules (YAML) computing the same burn rates and alerts "
        "from request metrics; check them with `promtool check rules`.",
    )
    rules.add_argument("--config", required=True, help="SLO specification (YAML)")
    rules.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    rules.set_defaults(handler=run_rules)


def _load(path: str):
    from sagaway.observe.slo import SloSpecError, load_slo_spec

    try:
        return load_slo_spec(path)
    except SloSpecError as exc:
        raise CliError(str(exc)) from None


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--at {text!r} is not an ISO 8601 time; write e.g. 2024-05-01T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_report(args: argparse.Namespace) -> int:
    """Compute the report and print it as a table or JSON; write HTML if asked."""
    from sagaway.observe.slo import report_from_alb, report_json, report_table

    spec = _load(args.config)
    at = _when(args.at)
    folder = os.path.dirname(os.path.abspath(args.quarantine))
    if not os.path.isdir(folder):
        raise CliError(f"--quarantine {args.quarantine}: the folder {folder} does not exist")
    try:
        report = report_from_alb(spec, args.alb, at=at, quarantine_path=args.quarantine)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if report.at is None:
        raise CliError(
            f"no parseable access log entry in {', '.join(args.alb)} "
            f"({report.source.malformed} malformed lines set aside in {args.quarantine})"
        )
    first, last = report.source.first, report.source.last
    if (
        at is not None
        and first is not None
        and last is not None
        and all(r.at < first or r.window_start > last for r in report.results)
    ):
        print(
            f"sagaway: note: --at {args.at} puts every SLO window outside the logs, which "
            f"span {_iso(first)} to {_iso(last)}: the report counts no request",
            file=sys.stderr,
        )
    if args.html:
        from sagaway.observe.slo import report_html

        write_output(args.html, report_html(report))
    if args.json:
        json.dump(report_json(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report_table(report))
        if args.html:
            sys.stdout.write(f"HTML report written to {args.html}\n")
    return 0


def run_rules(args: argparse.Namespace) -> int:
    """Print (or write) the Prometheus rules."""
    from sagaway.observe.slo import prometheus_rules

    spec = _load(args.config)
    try:
        text = prometheus_rules(spec)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.output:
        write_output(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
