"""`sagaway demo`: a shop checkout under load with injected faults, on a fresh SQLite file."""

from __future__ import annotations

import argparse

from sagaway.cli import whole_number

CUSTOMERS = whole_number(1, 100_000)
SEED = whole_number(0, 2**32 - 1)


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a shop checkout under load with injected faults and check the invariants",
        description="Simulated customers check out while the payment provider has an outage, "
        "mail bounces, responses get lost and the worker is SIGKILLed; exits 1 if an "
        "invariant (no duplicate order, stock conserved, ...) breaks.",
    )
    demo.add_argument(
        "--customers", type=CUSTOMERS, default=300, help=f"how many ({CUSTOMERS.span}; default 300)"
    )
    demo.add_argument("--seed", type=SEED, default=7, help=f"random seed ({SEED.span}; default 7)")
    demo.add_argument(
        "--dir", default="demo-data", help="where to put the databases (default ./demo-data)"
    )
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from sagaway.cli import CliError
    from sagaway.demo.driver import Scenario, run_demo

    where = Path(args.dir)
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"--dir {args.dir}: cannot create it ({exc.strerror}): give a directory you can "
            "write to"
        ) from None
    if not os.access(where, os.W_OK | os.X_OK):
        raise CliError(f"--dir {args.dir}: cannot write there: give a directory you can write to")
    return run_demo(args.dir, Scenario(customers=args.customers, seed=args.seed))
