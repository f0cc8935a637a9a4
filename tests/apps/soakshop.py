"""The shop of the soak (tests/soak.py): a checkout saga whose every effect is written to a
ledger, so that the soak can reconcile them at the end.

Each body appends `<kind> <order> <idempotency key> <pid>` to the file named by
$SAGAWAY_TEST_LOG in one O_APPEND write: `reserve`, `charge`, `order` (an order placed),
`refund`, `release`, and `mail` (the consumer group `mailer` handling `orders.placed`). A
provider that honours idempotency keys does an effect once per key: the soak counts keys.
"""

from __future__ import annotations

import os

from sagaway import App, Permanent, Retry, current_step

LEDGER = os.environ.get("SAGAWAY_TEST_LOG", "ledger.log")
_fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def note(kind: str, order: str, key: str) -> None:
    os.write(_fd, f"{kind} {order} {key} {os.getpid()}\n".encode())


def build(url: str, lease: float = 3.0) -> App:
    """The shop's App on `url`."""
    app = App(
        url,
        lease=lease,
        retry=Retry(attempts=5, base=0.05, cap=0.5),
        compensation_retry=Retry(attempts=20, base=0.05, cap=1.0),
    )

    @app.step
    def reserve(order: str) -> str:
        note("reserve", order, current_step().idempotency_key)
        return f"hold-{order}"

    @reserve.compensation
    def release(order: str, result: str | None = None) -> None:
        note("release", order, current_step().idempotency_key)

    @app.step
    def charge(order: str, amount: int) -> str:
        note("charge", order, current_step().idempotency_key)
        return f"charge-{order}"

    @charge.compensation
    def refund(order: str, amount: int, result: str | None = None) -> None:
        note("refund", order, current_step().idempotency_key)

    @app.step
    def place(order: str, fail: bool) -> str:
        if fail:
            raise Permanent(f"order {order} refused")
        step = current_step()
        step.publish("orders.placed", {"order": order}, key=order)
        note("order", order, step.idempotency_key)
        return order

    @app.saga()
    def checkout(ctx, order: str, amount: int, fail: bool) -> str:
        reserve(order)
        charge(order, amount)
        return place(order, fail)

    @app.consumer("orders.placed", group="mailer", concurrency=4)
    def mail(message) -> None:
        note("mail", message.payload["order"], message.idempotency_key)

    return app


if "SAGAWAY_DB" in os.environ:
    app = build(os.environ["SAGAWAY_DB"], float(os.environ.get("SAGAWAY_TEST_LEASE", "3")))
