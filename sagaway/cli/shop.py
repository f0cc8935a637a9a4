"""`sagaway shop`: the reference shop's commands."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add `shop` and its subcommands."""
    from sagaway.shop.sale.cli import register_sale

    shop = commands.add_parser("shop", help="the reference shop: a sale day under faults")
    sub = shop.add_subparsers(dest="shop_command", metavar="SUBCOMMAND")
    sub.required = True
    register_sale(sub)
