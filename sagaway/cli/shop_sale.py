"""`sagaway shop sale` (`sagaway.shop.sale`), registered by the `sagaway shop` command group;
the sale itself is imported only when the command runs, so that `sagaway --help` works without
the shop extra."""

from __future__ import annotations

import argparse

from sagaway.cli import whole_number

WORKERS = whole_number(1, 64)
SEED = whole_number(0, 2**32 - 1)


def register_sale(shop_commands: argparse._SubParsersAction) -> None:
    """Add `sale` to the subcommands of `sagaway shop`."""
    sale = shop_commands.add_parser(
        "sale",
        help="run the shop through a sale day with faults; exit 1 if an invariant breaks",
        description="Starts the providers, the shop and its workers, sends a sale's customers "
        "through the checkout while a 10x spike, a payment quota, a gray failure, a payment "
        "outage and a worker crash happen in turn, then reports latency, shedding, orders, SLO "
        "burn rates and the invariants (report.html, report.json). Exit 1 if an invariant "
        "(no duplicate order, no double charge, stock conserved, one mail per order) breaks.",
    )
    sale.add_argument(
        "--quick", action="store_true", help="a short run (under 3 minutes) instead of the full day"
    )
    sale.add_argument(
        "--db",
        default=None,
        help="the shop's store: sqlite:///PATH or postgresql://... "
        "(default: a SQLite file in --out)",
    )
    sale.add_argument(
        "--workers",
        type=WORKERS,
        default=None,
        help=f"worker processes ({WORKERS.span}; default 1 on SQLite, 2 on PostgreSQL)",
    )
    sale.add_argument(
        "--out", default="sale", help="where the report, logs and databases go (default ./sale)"
    )
    sale.add_argument(
        "--seed", type=SEED, default=7, help=f"the customers' random seed ({SEED.span}; default 7)"
    )
    sale.add_argument(
        "--no-shedding", action="store_true", help="run the shop without load shedding, to compare"
    )
    sale.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle `sagaway shop sale`."""
    import os
    from pathlib import Path

    from sagaway.cli import CliError

    try:
        from sagaway.shop.sale import SaleOptions, full_plan, quick_plan, run_sale
    except ImportError as exc:
        raise CliError(str(exc)) from None

    db = args.db
    if db is not None and not db.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise CliError(f"--db {db}: give sqlite:///PATH or postgresql://USER@HOST/DB")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"--out {args.out}: cannot create it ({exc.strerror}): "
            "give a directory you can write to"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise CliError(f"--out {args.out}: cannot write there: give a directory you can write to")
    for stale in out.glob("*.db*"):
        stale.unlink()  # the providers' files (and the default store): a sale starts from empty
    for stale in (out / "logs").glob("*.log"):
        stale.unlink()  # the access log is the SLOs' input: only this sale's requests
    if db is None:
        db = f"sqlite:///{(out / 'shop.db').resolve()}"
    workers = args.workers or (1 if db.startswith("sqlite") else 2)
    options = SaleOptions(
        plan=quick_plan() if args.quick else full_plan(),
        db_url=db,
        out=out.resolve(),
        workers=workers,
        seed=args.seed,
        shedding=not args.no_shedding,
    )
    return run_sale(options)
