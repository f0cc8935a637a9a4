"""A checkout saga for tests that kill worker processes.

Every step and compensation body appends a line `<name> <order> <pid> <idempotency key>` to
the file named by $SAGAWAY_TEST_LOG, so a test can count how often each body ran across
processes and under which key. A body
hangs while the file `<log>.hang-<name>` exists (so a test can SIGKILL a worker inside it),
and `charge` fails for good while `<log>.fail-charge` exists. Each body takes
$SAGAWAY_TEST_STEP_SECONDS (default 0).
"""

from __future__ import annotations

import os
import time

from sagaway import App, Permanent, Retry, current_step


def build(url: str, log: str, lease: float = 30.0) -> App:
    """An App with the checkout saga on `url`, logging bodies to `log`."""
    app = App(
        url,
        lease=lease,
        retry=Retry(attempts=3, base=0.01, cap=0.05),
        compensation_retry=Retry(attempts=3, base=0.01, cap=0.05),
    )

    def note(name: str, order: str) -> None:
        key = current_step().idempotency_key
        with open(log, "a") as f:
            f.write(f"{name} {order} {os.getpid()} {key}\n")
        while os.path.exists(f"{log}.hang-{name}"):
            time.sleep(0.01)
        time.sleep(float(os.environ.get("SAGAWAY_TEST_STEP_SECONDS", "0")))

    @app.step
    def reserve(order: str) -> str:
        note("reserve", order)
        return f"hold-{order}"

    @reserve.compensation
    def release(order: str, result: str | None = None) -> None:
        note("release", order)

    @app.step
    def charge(order: str) -> str:
        note("charge", order)
        if os.path.exists(f"{log}.fail-charge"):
            raise Permanent("card declined")
        return f"charge-{order}"

    @app.step
    def ship(order: str) -> str:
        note("ship", order)
        return f"parcel-{order}"

    @app.saga()
    def checkout(ctx, order: str) -> dict:
        return {"hold": reserve(order), "charge": charge(order), "parcel": ship(order)}

    return app


if "SAGAWAY_TEST_LOG" in os.environ:
    app = build(
        os.environ["SAGAWAY_DB"],
        os.environ["SAGAWAY_TEST_LOG"],
        float(os.environ.get("SAGAWAY_TEST_LEASE", "30")),
    )
