"""The `sagaway` command line.

Each command group lives in its own module under `sagaway.cli` and exposes
`register(subparsers)`; handlers raise `CliError` for anything the user can fix, which is
printed as one line on stderr with exit code 2. Heavy imports happen inside handlers so
that `sagaway --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

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


def _number(
    kind: type, low: float, high: float | None = None, above: bool = False
) -> Callable[[str], Any]:
    """An argparse `type` taking a `kind` number within [low, high] (above `low` with
    `above`), with a plain error."""
    if above:
        span = f"a number above {low:g}"
    else:
        span = f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}"
            ) from None
        if not ((value > low if above else value >= low) and (high is None or value <= high)):
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {span}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


positive_int = _number(int, 1)
non_negative_int = _number(int, 0)
positive_float = _number(float, 0, above=True)
non_negative_float = _number(float, 0)
port_number = _number(int, 0, 65535)


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
    except BrokenPipeError:  # `sagaway ... | head`: the reader left, which is no error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit flush does not fail again
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
