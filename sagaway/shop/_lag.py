"""How long ready work waits for the shop's event loop: the queue the in-flight limit cannot see.

A request that reaches the edge has already waited, in the socket and in the loop's ready
queue, for as long as the loop took to get round to it; on a process short of CPU that wait
is where the latency goes, while the requests in flight stay few. `LoopLag` measures it: a
sleeper task wakes every `every` seconds and records how late it woke. Like CoDel, it acts
on the *standing* delay, the smallest lateness seen over the last `window` seconds, so that
a burst the loop clears at once does not count and a queue that persists does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["LoopLag"]


class LoopLag:
    """The event loop's standing lag, sampled by a task started with `ensure_running()` on
    the loop it measures (the edge starts it on the first request)."""

    def __init__(
        self,
        every: float = 0.01,
        window: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < every < window:
            raise ValueError(
                f"LoopLag: every={every!r} and window={window!r} must satisfy "
                "0 < every < window (the window must hold several samples)"
            )
        self.every, self.window, self._clock = every, window, clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=256)
        self._due: float | None = None  # when the sleeper should wake next
        self._task: asyncio.Task[None] | None = None
        self.worst = 0.0  # the largest lateness seen, for the stats

    def record(self, at: float, lag: float) -> None:
        """A sample: at `at` (clock seconds) the sleeper woke `lag` seconds late."""
        self._samples.append((at, max(0.0, lag)))
        self.worst = max(self.worst, lag)

    def standing(self, now: float | None = None) -> float:
        """Seconds of standing lag at `now`: the least lateness over the window, counting
        the sleeper's own lateness so far if it is overdue (0 before any sample)."""
        now = self._clock() if now is None else now
        recent = [lag for at, lag in self._samples if now - at <= self.window]
        if self._due is not None and now > self._due:
            recent.append(now - self._due)
        return min(recent) if recent else 0.0

    def ensure_running(self) -> None:
        """Start the sampler on the running loop unless it runs there already."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._sample(), name="sagaway-shop-loop-lag")

    async def _sample(self) -> None:
        while True:
            self._due = self._clock() + self.every
            await asyncio.sleep(self.every)
            now = self._clock()
            self.record(now, now - self._due)
