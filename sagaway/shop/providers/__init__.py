"""The shop's providers — payment, inventory and mail — as small HTTP services on 127.0.0.1,
each with a SQLite file of its own and fault controls over HTTP (`PUT /_faults`).

Run one with `python -m sagaway.shop.providers payment --port 8101 --db payment.db`; it prints
`listening on http://127.0.0.1:8101` once it accepts connections.
"""

from __future__ import annotations

from sagaway.shop.providers._faults import MODES, FaultSettings
from sagaway.shop.providers._server import Provider, serve
from sagaway.shop.providers.inventory import Inventory
from sagaway.shop.providers.mail import Mail
from sagaway.shop.providers.payment import Payment

__all__ = ["KINDS", "MODES", "FaultSettings", "Inventory", "Mail", "Payment", "Provider", "serve"]

KINDS: dict[str, type[Provider]] = {"payment": Payment, "inventory": Inventory, "mail": Mail}
