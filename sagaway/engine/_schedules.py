"""Cron schedules: `@app.schedule("0 3 * * *", tz="Asia/Tokyo")` starts one run of a saga per
tick. Every worker process runs the same loop; the tick is the run's idempotency key
(`schedule:<saga>:<tick in UTC>`), so however many workers see a tick, one run starts.

After downtime, the ticks missed since the last started one follow `catch_up`: `"latest"`
(default) starts only the newest missed tick, `"all"` every one (at most 1,000, newest
kept), `"none"` none — a tick counts as missed once it is more than `GRACE` seconds old. A
schedule with no run yet starts at its first tick after the worker started.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from sagaway.errors import ConfigurationError

if TYPE_CHECKING:
    from sagaway.engine.definitions import SagaDefinition
    from sagaway.store.base import Store

__all__ = ["CATCH_UP", "GRACE", "Schedule", "ScheduleRunner"]

log = logging.getLogger("sagaway")

CATCH_UP = ("latest", "all", "none")
GRACE = 60.0  # seconds after its time during which a tick is on time, not missed
_MAX_CATCH_UP = 1000
_KEY_TIME = "%Y-%m-%dT%H:%M:%SZ"  # fixed width: keys sort as their ticks


@dataclass(frozen=True)
class Schedule:
    """A saga started at every tick of `cron` in time zone `tz`."""

    saga: str
    cron: str
    tz: str
    catch_up: str
    takes_tick: bool  # the saga has a `tick` parameter: it gets the tick's ISO time

    @classmethod
    def declare(cls, saga: SagaDefinition, cron: str, tz: str, catch_up: str) -> Schedule:
        """Check the declaration; raises ConfigurationError naming what is wrong."""
        where = f"@app.schedule({cron!r}) on saga {saga.name!r}"
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise ConfigurationError(
                f"{where}: not a cron expression; give five fields, minute hour day month "
                "weekday, e.g. '0 3 * * *' (03:00 every day) or '*/15 * * * *'"
            )
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigurationError(
                f"{where}: unknown time zone {tz!r}; give an IANA name such as 'UTC' or "
                "'Asia/Tokyo'"
            ) from None
        if catch_up not in CATCH_UP:
            raise ConfigurationError(
                f"{where}: catch_up={catch_up!r}; give one of {', '.join(CATCH_UP)}"
            )
        parameters = list(saga.signature.parameters.values())[1:]
        takes_tick = any(p.name == "tick" for p in parameters)
        required = [
            p.name
            for p in parameters
            if p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            and p.name != "tick"
        ]
        if required:
            raise ConfigurationError(
                f"{where}: a scheduled saga is started with no arguments (a `tick` parameter "
                f"gets the tick's time), but it requires {', '.join(required)}"
            )
        return cls(saga.name, cron, tz, catch_up, takes_tick)

    def key(self, tick: datetime) -> str:
        """The idempotency key of the run of `tick`."""
        return f"{self.prefix}{tick.astimezone(UTC).strftime(_KEY_TIME)}"

    @property
    def prefix(self) -> str:
        """What every key of this schedule's runs starts with."""
        return f"schedule:{self.saga}:"

    def tick_of(self, key: str) -> datetime:
        """The tick a key names."""
        return datetime.strptime(key.removeprefix(self.prefix), _KEY_TIME).replace(tzinfo=UTC)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after `after`."""
        local = after.astimezone(ZoneInfo(self.tz))
        tick: datetime = croniter(self.cron, local).get_next(datetime)
        return tick.astimezone(UTC)

    def due(self, last: datetime | None, anchor: datetime, now: datetime) -> list[datetime]:
        """The ticks to start now: those after the last started one (or after `anchor`,
        when none was) up to `now`, as `catch_up` says."""
        ticks: list[datetime] = []
        tick = self.next_tick(last or anchor)
        while tick <= now:
            ticks.append(tick)
            if len(ticks) > _MAX_CATCH_UP:
                ticks.pop(0)
            tick = self.next_tick(tick)
        if not ticks:
            return []
        on_time = [t for t in ticks if (now - t).total_seconds() <= GRACE]
        if self.catch_up == "all":
            return ticks
        if self.catch_up == "latest":
            return [ticks[-1]]
        return on_time

    def last_started(self, store: Store) -> datetime | None:
        """The newest tick a run was started for, from the store."""
        key = store.last_key(self.saga, self.prefix)
        return None if key is None else self.tick_of(key)


class ScheduleRunner:
    """The loop of one worker process: start the due ticks' runs, then sleep until the next
    tick (at most 30 s, so a clock change is noticed)."""

    def __init__(
        self,
        schedules: Callable[[], list[Schedule]],
        store: Callable[[], Store],
        start: Callable[..., Any],
    ) -> None:
        self._schedules, self._store, self._start = schedules, store, start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._anchor = datetime.now(UTC)

    def launch(self) -> None:
        """Start the loop's thread."""
        self._anchor = datetime.now(UTC)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sagaway-schedules", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def tick(self, now: datetime | None = None) -> list[str]:
        """Start every due run now; return their keys."""
        now = now or datetime.now(UTC)
        started = []
        for schedule in self._schedules():
            last = schedule.last_started(self._store())
            for tick in schedule.due(last, self._anchor, now):
                kwargs = {"tick": tick.isoformat()} if schedule.takes_tick else {}
                self._start(schedule.saga, key=schedule.key(tick), **kwargs)
                started.append(schedule.key(tick))
        return started

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = 30.0
            try:
                self.tick()
                now = datetime.now(UTC)
                for schedule in self._schedules():
                    upcoming = schedule.next_tick(now)
                    wait = min(wait, (upcoming - now).total_seconds() + 0.01)
            except Exception:
                log.exception("sagaway schedules: starting scheduled runs failed; retrying")
                wait = 5.0
            self._stop.wait(max(0.05, wait))
