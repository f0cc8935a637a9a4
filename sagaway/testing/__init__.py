"""Testing sagas: virtual time and crash-point enumeration.

- `virtual_time(app)`: the App's timers, waits, retry backoffs and leases run on a
  `VirtualClock` the test moves (`clock.advance(seconds)`), and `run.result()` skips time
  while nothing is due: a 30-minute wait times out in milliseconds.
- `explore(saga, args, invariant, app=app, setup=...)`: the saga run once per crash point
  (after each journal write, after each step or compensation body ran but before its
  record), each crash recovered by a new App on the same store, each outcome judged by the
  invariant; raises `InvariantViolated` naming the first crash point that broke it.

See docs/testing.md.
"""

from sagaway.errors import InvariantViolated, RunStuck
from sagaway.testing._explore import CrashPoint, Exploration, explore
from sagaway.testing._virtual import VirtualClock, virtual_time

__all__ = [
    "CrashPoint",
    "Exploration",
    "InvariantViolated",
    "RunStuck",
    "VirtualClock",
    "explore",
    "virtual_time",
]
