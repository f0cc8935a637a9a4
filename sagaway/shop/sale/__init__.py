"""The sale day: `sagaway shop sale` runs the reference shop under a sale's load and faults.

It starts the providers, the shop and its workers as processes, sends open-loop customers
through the checkout (some clicking twice, some submitting again), drives the providers' faults
phase by phase (a 10x spike, a payment quota, a gray failure, an outage, a worker SIGKILLed),
waits for the backlog to drain, and reports latency, shedding, orders, SLO burn rates and the
invariants (no duplicate order, no double charge, stock conserved, one mail per order) in the
terminal, `report.json` and `report.html`.
"""

try:
    import httpx  # noqa: F401  # the customers' client
except ImportError:  # pragma: no cover - the wheel test runs it without extras
    raise ImportError(
        "the sale needs httpx and the shop, which are not installed: pip install 'sagaway[shop]'"
    ) from None

from sagaway.shop.sale._plan import FAULT_OFF, Phase, SalePlan, full_plan, quick_plan
from sagaway.shop.sale._run import SaleOptions, SaleRun, run_sale, sale_against

__all__ = [
    "FAULT_OFF",
    "Phase",
    "SaleOptions",
    "SalePlan",
    "SaleRun",
    "full_plan",
    "quick_plan",
    "run_sale",
    "sale_against",
]
