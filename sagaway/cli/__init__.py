"""The `sagaway` command line.

Each command group lives in its own module under `sagaway.cli` and exposes
`register(subparsers)`; handlers raise `CliError` for anything the user can fix, which is
printed as one line on stderr with exit code 2. Heavy imports happen inside handlers so
that `sagaway --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Command-group modules, in the order `--help` lists them.
_GROUPS: tuple[str, ...] = (
    "sagaway.cli.runs",
    "sagaway.cli.worker",
    "sagaway.cli.demo",
    "sagaway.cli.alarms",
    "sagaway.cli.metrics",
    "sagaway.cli.slo",
)


class CliError(Exception):
    """An error the user can fix: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="sagaway",
        description="Durable sagas, resilience and SLO monitoring for Python services.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in _GROUPS:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as exc:
        print(f"sagaway: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
