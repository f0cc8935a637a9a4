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
from collections.abc import Sequence
from typing import Any

# Command-group modules, in the order `--help` lists them.
_GROUPS: tuple[str, ...] = (
    "sagaway.cli.runs",
    "sagaway.cli.messages",
    "sagaway.cli.schedules",
    "sagaway.cli.worker",
    "sagaway.cli.demo",
    "sagaway.cli.alarms",
    "sagaway.cli.metrics",
    "sagaway.cli.slo",
    "sagaway.cli.tokens",
    "sagaway.cli.serve",
    "sagaway.cli.shop",
)


class CliError(Exception):
    """An error the user can fix: printed without a traceback, exit status 2."""


class NumberType:
    """An argparse `type` taking a `kind` number from `low` to `high` (above `low` with
    `above`), refusing anything else in one line; `span` states the range for help texts."""

    def __init__(self, kind: type, low: float, high: float, above: bool = False) -> None:
        self.kind, self.low, self.high, self.above = kind, low, high, above
        lo, hi = (str(low), str(high)) if kind is int else (f"{low:g}", f"{high:g}")
        self.span = f"a number above {lo}, up to {hi}" if above else f"from {lo} to {hi}"
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if self.kind is int else 'a number'}"
            ) from None
        low_ok = value > self.low if self.above else value >= self.low
        if not (low_ok and value <= self.high):  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {self.span}")
        return value


def whole_number(low: int, high: int) -> NumberType:
    """An argparse `type` for a whole number from `low` to `high`."""
    return NumberType(int, low, high)


def seconds(high: float, low: float = 0, above: bool = True) -> NumberType:
    """An argparse `type` for seconds above `low` (from `low` with `above=False`) up to
    `high`."""
    return NumberType(float, low, high, above=above)


port_number = whole_number(0, 65535)


def age_seconds(text: str, what: str) -> float:
    """An `--older-than` value ("30d", "12h", "2w") in seconds; CliError when it is not a
    positive duration. `what` says what the age measures, for the message."""
    from sagaway.observe.slo import parse_duration

    if text.startswith("-"):
        raise CliError(f"--older-than: {text} must be positive: {what}, e.g. 30d")
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(f"--older-than: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every command group registered."""
    from sagaway import __version__

    parser = argparse.ArgumentParser(
        prog="sagaway",
        description="Durable sagas, messaging, resilience and SLO monitoring for Python services, "
        "with an HTTP API and dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in _GROUPS:
        importlib.import_module(module).register(commands)
    return parser


def _valued_options(parser: argparse.ArgumentParser) -> set[str]:
    """The long options, in `parser` and its subcommands, that take one value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _valued_options(sub)
        elif action.nargs is None and action.option_strings:
            found.update(o for o in action.option_strings if o.startswith("--"))
    return found


def _attach_dashed_values(argv: Sequence[str], valued: set[str]) -> list[str]:
    """`--older-than -5d` as `--older-than=-5d`: argparse takes a value that starts with
    '-' (unless it is a plain number) for an option and would only say "expected one
    argument", not what is wrong with the value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in valued and arg[:1] == "-" and arg[1:2].isdigit():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a `sagaway` command line (without the program name) as `main` does; a usage error
    is printed on stderr and raises SystemExit(2)."""
    parser = build_parser()
    return parser.parse_args(_attach_dashed_values(argv, _valued_options(parser)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, where a full disk under a redirected stdout is caught
        return code
    except CliError as exc:
        print(f"sagaway: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `sagaway ... | head`: the reader left, which is no error
        _discard_stdout()
        return 0
    except OSError as exc:
        from sagaway.cli._output import OUTPUT_ERRNOS

        if exc.errno not in OUTPUT_ERRNOS:
            raise
        print(f"sagaway: error: cannot write the output: {exc.strerror}", file=sys.stderr)
        _discard_stdout()
        return 1


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
