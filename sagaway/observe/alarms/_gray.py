"""Gray failure: callers see a dependency failing while the dependency says it is healthy.

A `GrayFailureSource` compares two views of one dependency, period by period:

- the callers' view: the tries of one step (`step_seconds` in the engine's metrics: how many
  failed, how long they took) over the period that just ended;
- the dependency's own view: its health endpoint, polled once per period (2xx = healthy).

A period *breaches* when the callers see failure (an error rate or an average latency at or
above its threshold, over at least `min_calls` tries) while the probe says healthy. Both
failing is a plain outage and both fine is health: neither breaches. Fewer than `min_calls`
tries is a missing datapoint. The source is in ALARM when `datapoints_to_alarm` (M) of the
last `evaluation_periods` (N) periods breach, with CloudWatch's rules for missing data, as any
`MetricAlarm`; it is an `AlarmSource`, so composites, incidents and notifiers use it as they
use any alarm.

The probe can only be asked now: an evaluation of a period that ended long ago (replaying the
past) is INSUFFICIENT_DATA and says why, rather than pairing old metrics with today's health.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from sagaway.observe._time import iso_time
from sagaway.observe.alarms._engine_alarms import (
    BUCKET_SECONDS,
    EngineMetricReader,
    EngineMetricReadError,
    EngineMetricRef,
)
from sagaway.observe.alarms._metric_alarm import AlarmDefinitionError, AlarmState, MetricAlarm

__all__ = ["GrayFailureSource", "Probe", "ProbeResult"]

# How far behind the clock an evaluation may be and still be paired with a probe made now.
_LIVE_SLACK = 60.0


@dataclass(frozen=True)
class ProbeResult:
    """One answer of a health endpoint: healthy (a 2xx status) or not, and what was seen."""

    healthy: bool
    text: str


@dataclass(frozen=True)
class Probe:
    """An HTTP health endpoint polled with GET; a 2xx answer within `timeout` is healthy."""

    url: str
    timeout: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise AlarmDefinitionError(
                f"probe {self.url!r} must be an http:// or https:// URL of a health endpoint"
            )
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float):
            raise AlarmDefinitionError(f"probe_timeout {self.timeout!r} must be seconds")
        if not 0 < self.timeout <= 60:
            raise AlarmDefinitionError(
                f"probe_timeout {self.timeout!r} must be in (0, 60] seconds: a health check "
                "that takes longer is a failed one"
            )

    def check(self) -> ProbeResult:
        """GET the URL now; never raises (a refused connection is an unhealthy answer)."""
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                status = response.status
                reason = response.reason
        except urllib.error.HTTPError as error:
            return ProbeResult(False, f"{error.code} {error.reason}")
        except TimeoutError:
            return ProbeResult(False, f"no answer within {self.timeout:g} s")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            why = getattr(error, "reason", None) or error
            if isinstance(why, TimeoutError):
                return ProbeResult(False, f"no answer within {self.timeout:g} s")
            return ProbeResult(False, f"unreachable ({why})")
        return ProbeResult(200 <= status < 300, f"{status} {reason}")


@dataclass(frozen=True)
class _Period:
    point: float | None
    reason: str


class GrayFailureSource:
    """An `AlarmSource` for gray failures of one dependency (see the module docstring).

    `step` (and optionally `saga`) names the step whose tries are the callers' view;
    `error_rate` (a fraction) and/or `latency` (seconds, the tries' average) say when the
    callers see failure; `probe` is the dependency's health endpoint. `period` (a multiple of
    60 s, as engine metrics are kept per minute), `evaluation_periods`,
    `datapoints_to_alarm` and `treat_missing` are a `MetricAlarm`'s. Raises
    AlarmDefinitionError for a definition that cannot work. Give the store's reader with
    `bind(reader)` (the `Monitor` does) before the first evaluation.
    """

    def __init__(
        self,
        name: str,
        *,
        step: str,
        probe: Probe,
        saga: str | None = None,
        error_rate: float | None = None,
        latency: float | None = None,
        min_calls: int = 10,
        period: int = 60,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        treat_missing: str = "notBreaching",
        description: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        where = f"gray failure {name!r}"
        self.alarm = MetricAlarm(
            name,
            threshold=1,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing=treat_missing,
            period=period,
            description=description,
        )
        if period % BUCKET_SECONDS:
            raise AlarmDefinitionError(
                f"{where}: period {period}s: engine metrics are kept per minute, so the "
                "period must be a multiple of 60 seconds (60, 120, 300, ...)"
            )
        if error_rate is None and latency is None:
            raise AlarmDefinitionError(
                f"{where}: give error_rate (e.g. 0.2: a fifth of the calls failed) and/or "
                "latency (seconds: the calls' average), or callers can never see a failure"
            )
        if error_rate is not None and not 0 < error_rate <= 1:
            raise AlarmDefinitionError(
                f"{where}: error_rate {error_rate!r} must be a fraction in (0, 1] (20 % is 0.2)"
            )
        if latency is not None and not latency > 0:
            raise AlarmDefinitionError(f"{where}: latency {latency!r} must be > 0 seconds")
        if isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1:
            raise AlarmDefinitionError(f"{where}: min_calls {min_calls!r} must be an int >= 1")
        where_labels = {"step": step} if saga is None else {"saga": saga, "step": step}
        try:
            self._ok = EngineMetricRef("step_seconds", {**where_labels, "outcome": "ok"})
            self._error = EngineMetricRef("step_seconds", {**where_labels, "outcome": "error"})
        except ValueError as exc:
            raise AlarmDefinitionError(f"{where}: {exc}") from None
        self.name = name
        self.step, self.saga = step, saga
        self.probe = probe
        self.error_rate, self.latency, self.min_calls = error_rate, latency, min_calls
        self.period = period
        self.clock = clock
        self.engine: EngineMetricReader | None = None
        self._periods: dict[float, _Period] = {}
        self._state = AlarmState.INSUFFICIENT_DATA
        self._reason = "no period has ended yet"
        self._assessed: float | None = None

    def bind(self, engine: EngineMetricReader) -> None:
        """Read the callers' view through `engine` (the store's `EngineMetricReader`)."""
        self.engine = engine

    def describe(self) -> str:
        """One line for `alarms check`."""
        callers = " or ".join(
            text
            for text in (
                f"error rate >= {self.error_rate:g}" if self.error_rate is not None else "",
                f"average >= {self.latency:g}s" if self.latency is not None else "",
            )
            if text
        )
        alarm = self.alarm
        return (
            f"callers of {self._calls()} see {callers} (at least {self.min_calls} calls) while "
            f"{self.probe.url} says healthy, for {alarm.datapoints_to_alarm} of "
            f"{alarm.evaluation_periods} periods of {self.period}s "
            f"(missing data: {alarm.treat_missing})"
        )

    def state_at(self, timestamp: float) -> AlarmState:
        """The state for the evaluation at `timestamp`: a new datapoint when a period ended
        then, the state of the last one otherwise."""
        self._assess(timestamp)
        return self._state

    def explain(self, timestamp: float) -> str:
        """Which side said what, and how many periods disagreed."""
        self._assess(timestamp)
        return self._reason

    # ----------------------------------------------------------------- internals

    def _calls(self) -> str:
        return f"{self.saga}/{self.step}" if self.saga else repr(self.step)

    def _assess(self, at: float) -> None:
        if at == self._assessed or round(at) % self.period:
            return  # asked again for the same evaluation, or not a boundary of this period
        self._assessed = at
        behind = self.clock() - at
        if behind > self.period + _LIVE_SLACK:
            self._state = AlarmState.INSUFFICIENT_DATA
            self._reason = (
                f"cannot say for the period ending {iso_time(at)}: it ended {behind:.0f} s ago "
                f"and {self.probe.url} can only be asked how it is now"
            )
            return
        try:
            period = self._measure(at)
        except EngineMetricReadError as exc:
            self._state, self._reason = AlarmState.INSUFFICIENT_DATA, f"cannot say: {exc}"
            return
        self._periods[at] = period
        span = self.alarm.evaluation_range or 1
        starts = [at - i * self.period for i in range(span - 1, -1, -1)]
        for old in [t for t in self._periods if t < starts[0]]:
            del self._periods[old]
        points = [self._periods[t].point if t in self._periods else None for t in starts]
        self._state = self.alarm.evaluate(points, previous=self._state)
        recent = [p for p in points if p is not None][-self.alarm.evaluation_periods :]
        self._reason = (
            f"{period.reason} [{sum(1 for p in recent if p >= 1)} of the last {len(recent)} "
            f"periods gray; needs {self.alarm.datapoints_to_alarm} of "
            f"{self.alarm.evaluation_periods}]"
        )

    def _measure(self, at: float) -> _Period:
        if self.engine is None:
            raise EngineMetricReadError(
                f"gray failure {self.name!r} has no store to read step metrics from: "
                "bind(EngineMetricReader(store))"
            )
        since = at - self.period
        ok, error = self.engine.read(
            [(self._ok, self.period, since), (self._error, self.period, since)]
        )
        counts = [series.datapoints(at, 1, "count")[0] or 0 for series in (ok, error)]
        totals = [series.datapoints(at, 1, "sum")[0] or 0.0 for series in (ok, error)]
        calls, failed = int(sum(counts)), int(counts[1])
        probe = self.probe.check()
        said = f"probe {self.probe.url}: {probe.text}"
        if calls < self.min_calls:
            return _Period(
                None,
                f"callers: {calls} call(s) of {self._calls()} over {self.period} s, fewer than "
                f"the {self.min_calls} needed to judge; {said}",
            )
        rate, average = failed / calls, sum(totals) / calls
        seen = (
            f"callers: {rate:.0%} of {self._calls()} calls failed over {self.period} s "
            f"({failed} of {calls}), {average:.3g} s on average"
        )
        failing = (self.error_rate is not None and rate >= self.error_rate) or (
            self.latency is not None and average >= self.latency
        )
        if failing and probe.healthy:
            return _Period(1.0, f"gray failure: {seen}; {said}")
        if failing:
            return _Period(0.0, f"{seen}; {said}: both say it fails, an outage, not gray")
        return _Period(0.0, f"{seen}; {said}")
