"""What the shop sells: the products, their prices (in cents) and the stock at the start.

Shared by the reference shop (the catalog route and the inventory provider) and the
in-process demonstration (`sagaway demo`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOG", "PRICES", "STOCK", "Product", "amount_of"]


@dataclass(frozen=True)
class Product:
    """One product: its stock-keeping unit, name, price in cents and units at the start."""

    sku: str
    name: str
    price: int
    stock: int


CATALOG: tuple[Product, ...] = (
    Product("mug", "Enamel mug", 12_00, 130),
    Product("tee", "Organic tee", 25_00, 300),
    Product("cap", "Canvas cap", 18_00, 300),
)
PRICES: dict[str, int] = {p.sku: p.price for p in CATALOG}
STOCK: dict[str, int] = {p.sku: p.stock for p in CATALOG}


def amount_of(items: list[dict]) -> int:
    """The price in cents of `items` (`[{"sku": ..., "qty": ...}]`); KeyError for an
    unknown sku."""
    return sum(PRICES[item["sku"]] * int(item["qty"]) for item in items)
