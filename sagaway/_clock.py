"""The wall clock, read in one place.

Every wall-clock reading of the engine goes through its store's `now()`; a SQLite store's is
`wall()` below, the host's clock, which every process sharing the file shares. Tests replace
`wall` to step the clock (`_clock.wall = lambda: time.time() + 3600`); production pays one
module attribute lookup for that. Durations the engine measures itself (leases as an
execution knows them, heartbeat periods) use `time.monotonic()`, which no step moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wall"]

wall: Callable[[], float] = time.time
