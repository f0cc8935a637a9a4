"""A five-step saga for tests that run many worker processes and kill or pause some.

Each step body appends `<run id> <position> <pid> <start time>` to $SAGAWAY_TEST_LOG (one
O_APPEND write per line, so lines of several processes never mix) and returns
`"<pid> <start time>"`: the journal then says which body's completion was recorded.
"""

from __future__ import annotations

import os
import time

from sagaway import App, Retry, current_step

STEPS = 5


def build(url: str, log: str, lease: float = 2.0) -> App:
    """An App with the saga `five` on `url`, logging step bodies to `log`."""
    app = App(url, lease=lease, retry=Retry(attempts=3, base=0.01, cap=0.05))
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @app.step
    def work(n: int) -> str:
        info = current_step()
        started = f"{os.getpid()} {time.time():.6f}"
        os.write(fd, f"{info.run_id} {info.position} {started}\n".encode())
        time.sleep(0.005)  # long enough for runs to be in flight when a worker is stopped
        return started

    @app.saga()
    def five(ctx, n: int) -> int:
        for _ in range(STEPS):
            work(n)
        return n

    return app


if "SAGAWAY_TEST_LOG" in os.environ:
    app = build(
        os.environ["SAGAWAY_DB"],
        os.environ["SAGAWAY_TEST_LOG"],
        float(os.environ.get("SAGAWAY_TEST_LEASE", "2")),
    )
