"""A saga under a concurrency limit per key, for tests that run several worker processes.

Its one step counts, in the file named by $SAGAWAY_TEST_LOG (a JSON object under an
exclusive `flock`), the runs of each key inside the step at once and the most there ever
were. The limit is
$SAGAWAY_TEST_FLOW_LIMIT (default 3); each step body takes $SAGAWAY_TEST_STEP_SECONDS
(default 0.01).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sagaway import App, Retry

LIMIT = int(os.environ.get("SAGAWAY_TEST_FLOW_LIMIT", "3"))


@contextmanager
def counts(path: str) -> Iterator[dict]:
    """The counts file, read and written under an exclusive lock."""
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        data = json.loads(text) if text else {"inside": {}, "peak": {}}
        yield data
        f.seek(0)
        f.truncate()
        f.write(json.dumps(data))
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)


def read_counts(path: str | os.PathLike[str]) -> dict:
    """The counts as they stand, read under a shared lock: a writer truncates and rewrites the
    file, so a read without the lock may see it empty or half written. A file not yet
    written holds no counts."""
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        f.seek(0)
        text = f.read()
        fcntl.flock(f, fcntl.LOCK_UN)
    return json.loads(text) if text else {"inside": {}, "peak": {}}


def enter(path: str, key: str) -> None:
    """A run of `key` entered the step: count it and keep the peak."""
    with counts(path) as data:
        inside = data["inside"][key] = data["inside"].get(key, 0) + 1
        data["peak"][key] = max(data["peak"].get(key, 0), inside)


def leave(path: str, key: str) -> None:
    """A run of `key` left the step."""
    with counts(path) as data:
        data["inside"][key] -= 1


def build(url: str | None = None) -> App:
    """The App: saga `limited(ctx, shop, n)`, at most LIMIT runs per shop at once."""
    app = App(url, lease=float(os.environ.get("SAGAWAY_TEST_LEASE", "5")), retry=Retry(attempts=1))
    log = os.environ.get("SAGAWAY_TEST_LOG", "flow.json")
    pause = float(os.environ.get("SAGAWAY_TEST_STEP_SECONDS", "0.01"))

    @app.step
    def work(shop: str, n: int) -> int:
        enter(log, shop)
        try:
            time.sleep(pause)
        finally:
            leave(log, shop)
        return n

    @app.saga(concurrency=LIMIT, concurrency_key=lambda shop, n: shop)
    def limited(ctx, shop: str, n: int) -> int:
        return work(shop, n)

    return app


app = build()
