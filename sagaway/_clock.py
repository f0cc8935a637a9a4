"""The wall clock, read in one place.

Every wall-clock reading of the engine goes through its store's `now()`; a SQLite store's is
`wall()` below, the host's clock, which every process sharing the file shares. Tests replace
`wall` to step the clock (`_clock.wall = lambda: time.time() + 3600`); production pays one
module attribute lookup for that. Durations the engine measures itself (leases as an
execution knows them, heartbeat periods) use `time.monotonic()`, which no step moves.

`pause` is how an execution lets time pass in its thread (a retry's backoff, a short sleep,
a refusal waited out): it waits on the execution's `stopping` event and says whether that was
set. `sagaway.testing.virtual_time` replaces both `wall` and `pause` for the length of a test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["pause", "wall"]

wall: Callable[[], float] = time.time


def _wait(stopping: threading.Event, seconds: float) -> bool:
    return stopping.wait(seconds)


pause: Callable[[threading.Event, float], bool] = _wait
