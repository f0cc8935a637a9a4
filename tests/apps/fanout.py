"""A nightly batch for tests that kill worker processes in the middle of a fan-out.

`sync(item)` appends `sync <item> <pid> <idempotency key>` to the file named by
$SAGAWAY_TEST_LOG (see tests/processes.py `body_counts`), hangs while the file
`<log>.hang-sync-<item>` exists, and takes $SAGAWAY_TEST_STEP_SECONDS. `batch` maps it on
threads; `fleet` maps the saga `tenant` (one `sync`) as child runs.
"""

from __future__ import annotations

import os
import time

from sagaway import App, Retry, current_step


def build(url: str, log: str, lease: float = 30.0) -> App:
    """An App with the batch sagas on `url`, logging bodies to `log`."""
    app = App(
        url,
        lease=lease,
        retry=Retry(attempts=3, base=0.01, cap=0.05),
        compensation_retry=Retry(attempts=3, base=0.01, cap=0.05),
    )

    @app.step
    def sync(item: int) -> int:
        key = current_step().idempotency_key
        with open(log, "a") as f:
            f.write(f"sync {item} {os.getpid()} {key}\n")
        while os.path.exists(f"{log}.hang-sync-{item}"):
            time.sleep(0.01)
        time.sleep(float(os.environ.get("SAGAWAY_TEST_STEP_SECONDS", "0")))
        return item * 10

    @app.saga()
    def tenant(ctx, item: int) -> int:
        return sync(item)

    @app.saga()
    def batch(ctx, items: int, concurrency: int) -> list:
        return ctx.map(sync, list(range(items)), concurrency=concurrency)

    @app.saga()
    def fleet(ctx, items: int, concurrency: int | None = None) -> list:
        return ctx.map(tenant, list(range(items)), concurrency=concurrency)

    return app


if "SAGAWAY_TEST_LOG" in os.environ:
    app = build(
        os.environ["SAGAWAY_DB"],
        os.environ["SAGAWAY_TEST_LOG"],
        float(os.environ.get("SAGAWAY_TEST_LEASE", "30")),
    )
