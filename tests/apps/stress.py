"""A five-step saga for tests that run many worker processes and kill or pause some.

Each step body appends `<run id> <position> <pid> <start time>` to $SAGAWAY_TEST_LOG (one
O_APPEND write per line, so lines of several processes never mix) and returns
`"<pid> <start time>"`: the journal then says which body's completion was recorded. Each
body takes $SAGAWAY_TEST_STEP_SECONDS (default 0.005) and, when it returns, appends
`<run id> <position> <pid> <start time> <end time>` to `<log>.ends`. The
bodies of the third and later steps in process PID wait while the file `<log>.hold-PID`
exists (and say so in `<log>.hold-PID.waiting`): a test can stop a worker mid-run, with
steps recorded before and after the one in flight. The saga `nap` sleeps between two steps.
`five` ends by publishing a message to `five.done`, which the group `audit` handles by
appending `<message id> <pid>` to `<log>.handled`.

With $SAGAWAY_TEST_CLOCK naming a file, the process's wall clock (`sagaway._clock.wall`)
runs that file's number of seconds ahead (or behind): a test steps it by writing the file.
"""

from __future__ import annotations

import os
import threading
import time

from sagaway import App, Retry, _clock, current_step

STEPS = 5


def step_clock_by_file(path: str) -> None:
    """Make `_clock.wall` follow the offset written in `path` (read every 10 ms)."""
    offset = [0.0]

    def follow() -> None:
        while True:
            try:
                with open(path) as f:
                    offset[0] = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
            time.sleep(0.01)

    threading.Thread(target=follow, daemon=True).start()
    _clock.wall = lambda: time.time() + offset[0]


def build(url: str, log: str, lease: float = 2.0) -> App:
    """An App with the saga `five` on `url`, logging step bodies to `log`."""
    app = App(url, lease=lease, retry=Retry(attempts=3, base=0.01, cap=0.05))
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    hold = f"{log}.hold-{os.getpid()}"
    ends = os.open(f"{log}.ends", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # long enough for runs to be in flight when a worker is stopped
    seconds = float(os.environ.get("SAGAWAY_TEST_STEP_SECONDS", "0.005"))

    @app.step
    def work(n: int) -> str:
        info = current_step()
        started = f"{os.getpid()} {time.time():.6f}"
        os.write(fd, f"{info.run_id} {info.position} {started}\n".encode())
        time.sleep(seconds)
        if info.position >= 2 and os.path.exists(hold):
            with open(f"{hold}.waiting", "a") as f:
                f.write(f"{info.run_id}\n")
            while os.path.exists(hold):
                time.sleep(0.01)
        os.write(ends, f"{info.run_id} {info.position} {started} {time.time():.6f}\n".encode())
        return started

    @app.saga()
    def five(ctx, n: int) -> int:
        for _ in range(STEPS):
            work(n)
        ctx.publish("five.done", {"n": n})
        return n

    handled = os.open(f"{log}.handled", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @app.consumer("five.done", group="audit", concurrency=4)
    def audit(message) -> None:
        os.write(handled, f"{message.id} {os.getpid()}\n".encode())

    @app.saga()
    def nap(ctx, n: int, seconds: float) -> int:
        work(n)
        ctx.sleep(seconds)
        work(n)
        return n

    return app


if "SAGAWAY_TEST_CLOCK" in os.environ:
    step_clock_by_file(os.environ["SAGAWAY_TEST_CLOCK"])
if "SAGAWAY_TEST_LOG" in os.environ:
    app = build(
        os.environ["SAGAWAY_DB"],
        os.environ["SAGAWAY_TEST_LOG"],
        float(os.environ.get("SAGAWAY_TEST_LEASE", "2")),
    )
