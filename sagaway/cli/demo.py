"""`sagaway demo`: a shop checkout under load with injected faults, on a fresh SQLite file."""

from __future__ import annotations

import argparse

from sagaway.cli import positive_int


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a shop checkout under load with injected faults and check the invariants",
        description="Simulated customers check out while the payment provider has an outage, "
        "mail bounces, responses get lost and the worker is SIGKILLed; exits 1 if an "
        "invariant (no duplicate order, stock conserved, ...) breaks.",
    )
    demo.add_argument("--customers", type=positive_int, default=300, help="how many (default 300)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--dir", default="demo-data", help="where to put the databases (default ./demo-data)"
    )
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sagaway.cli import CliError
    from sagaway.demo.driver import Scenario, run_demo

    if args.customers < 1:
        raise CliError("--customers must be at least 1")
    return run_demo(args.dir, Scenario(customers=args.customers, seed=args.seed))
