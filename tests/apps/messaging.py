"""An App that publishes from a step and consumes in a group, for tests that kill worker
processes. Bodies append `<what> <id> <pid>` lines to the log file; `place` hangs while
`<log>.hang-place` exists; each handler call takes $SAGAWAY_TEST_STEP_SECONDS."""

from __future__ import annotations

import os
import time

from sagaway import App, Retry, current_step


def build(url: str | None, log: str, lease: float = 2.0) -> App:
    """The App on `url` (None: $SAGAWAY_DB), logging bodies to `log`."""
    app = App(url, lease=lease, retry=Retry(attempts=3, base=0.01, cap=0.05))

    def note(what: str, ident: str) -> None:
        with open(log, "a") as f:
            f.write(f"{what} {ident} {os.getpid()}\n")

    @app.step
    def place(order: str) -> str:
        current_step().publish("orders.placed", {"order": order}, key=order)
        note("place", order)
        while os.path.exists(f"{log}.hang-place"):
            time.sleep(0.01)
        return order

    @app.saga()
    def checkout(ctx, order: str) -> str:
        return place(order)

    @app.consumer("orders.placed", group="mailer", concurrency=8)
    def send_mail(message) -> None:
        time.sleep(float(os.environ.get("SAGAWAY_TEST_STEP_SECONDS", "0")))
        note("mail", message.id)

    return app


# What `sagaway worker tests.apps.messaging:app` runs (the store opens on first use).
app = build(
    None,
    os.environ.get("SAGAWAY_TEST_LOG", "messages.log"),
    float(os.environ.get("SAGAWAY_TEST_LEASE", "2")),
)
