"""SLO burn-rate alerts as children of composite alarms: `slo:<slo name>:<severity>`.

`SloAlerts` reads Application Load Balancer access logs into per-minute request counts (the
same scan as `sagaway slo report`) and offers one `AlarmSource` per SLO and alert severity:

- ALARM while at least one of the SLO's multi-window alerts of that severity fires;
- OK when none fires and every one of them saw enough requests to say so;
- INSUFFICIENT_DATA when none fires but one cannot say: its long or short window holds fewer
  requests than the SLO's `min_requests` (the low-traffic guard; with no log data at all
  there are no requests), or no log has been read yet.

At an evaluation time `t` the windows end at the last whole minute at or before `t - lag` and
hold the requests of (end - w, end], so a replay never looks past `t`; `lag` leaves time for
logs that arrive late (ALB delivers a file per node every five minutes). `read()` reads the
files it has not read before: all of them the first time, then only new ones, so following live
logs costs one small scan per period.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from sagaway.observe.alarms._metric_alarm import AlarmState
from sagaway.observe.metrics._series import Series
from sagaway.observe.slo._alb import Quarantine, find_log_files
from sagaway.observe.slo._alb_scan import SourceStats, scan_alb
from sagaway.observe.slo._burn_rates import SloResult, counter_for, evaluate_slo
from sagaway.observe.slo._report import burn_rate_text, firing_text
from sagaway.observe.slo._spec import SloDefinition, SloSpec

__all__ = ["SLO_PREFIX", "SloAlertSource", "SloAlerts", "slo_alert_name"]

SLO_PREFIX = "slo:"
MINUTE = 60.0
# The end of the five minutes an AWS-named file covers: `..._20240501T1205Z_10.0.1.100_...`.
_AWS_END = re.compile(r"_(\d{8}T\d{4})Z_")
_SLACK = 600.0  # a file may hold entries a little after the end its name gives


def slo_alert_name(slo: str, severity: str) -> str:
    """The alarm name of an SLO's alerts of one severity: `slo:api-availability:page`."""
    return f"{SLO_PREFIX}{slo}:{severity}"


class SloAlertSource:
    """One SLO's alerts of one severity as an `AlarmSource` (see the module docstring)."""

    def __init__(self, alerts: SloAlerts, slo: SloDefinition, severity: str) -> None:
        self.alerts = alerts
        self.slo = slo
        self.severity = severity
        self.name = slo_alert_name(slo.name, severity)
        self.rules = tuple(rule for rule in slo.alerts if rule.severity == severity)

    def state_at(self, timestamp: float) -> AlarmState:
        """ALARM, OK or INSUFFICIENT_DATA for the evaluation at `timestamp`."""
        return self.assess(timestamp)[0]

    def explain(self, timestamp: float) -> str:
        """Why `state_at(timestamp)` is what it is, with the burn rates, for people."""
        return self.assess(timestamp)[1]

    def assess(self, timestamp: float) -> tuple[AlarmState, str]:
        """The state and its explanation together."""
        result = self.alerts.result(self.slo, timestamp)
        if result is None:
            why = self.alerts.error or "no access log has been read yet"
            return AlarmState.INSUFFICIENT_DATA, f"cannot say: {why}"
        alerts = [a for a in result.alerts if a.severity == self.severity]
        firing = [a for a in alerts if a.firing]
        if firing:
            return AlarmState.ALARM, "; ".join(map(firing_text, firing))
        floor = max(self.slo.min_requests, 1)
        failing = (
            f"; reading the access logs failed: {self.alerts.error}" if self.alerts.error else ""
        )
        for a in alerts:
            if a.low_traffic:
                window = min((a.short, a.long), key=lambda w: result.window_requests[w])
                return AlarmState.INSUFFICIENT_DATA, (
                    f"cannot say: {result.window_requests[window]} requests over {window}, "
                    f"fewer than min_requests ({floor}) for the {a.long}/{a.short} alert{failing}"
                )
        return AlarmState.OK, f"no {self.severity} alert fires: " + ", ".join(
            f"{a.long}/{a.short} at {burn_rate_text(a.long_burn_rate)}/"
            f"{burn_rate_text(a.short_burn_rate)} < {a.threshold:g}"
            for a in alerts
        )

    def describe(self) -> str:
        """`SLO api-availability (99.9% over 30d): 1h/5m >= 14.4, 6h/30m >= 6`."""
        rules = ", ".join(f"{r.long}/{r.short} >= {r.threshold:g}" for r in self.rules)
        percent = f"{self.slo.objective * 100:.6g}%"
        return f"SLO {self.slo.name} ({percent} over {self.slo.window.label}): {rules}"


class SloAlerts:
    """The alerts of every SLO of `spec`, from the access logs under `paths`.

    `sources` holds one `SloAlertSource` per SLO and severity, by name. Nothing is read until
    `read()`; until then every source is INSUFFICIENT_DATA. Malformed lines are counted and
    set aside in `quarantine` (a file created only if there is one), as by `slo report`.
    """

    def __init__(
        self,
        spec: SloSpec,
        paths: Sequence[str] = (),
        *,
        lag: float = 0.0,
        quarantine: str = "alb-quarantine.jsonl",
    ) -> None:
        if lag < 0 or lag % MINUTE:
            raise ValueError(f"lag must be a whole number of minutes >= 0, got {lag:g}s")
        self.spec = spec
        self.paths = list(paths)
        self.lag = float(lag)
        self.quarantine_path = quarantine
        self.sources: dict[str, SloAlertSource] = {}
        for slo in spec.slos:
            for severity in dict.fromkeys(rule.severity for rule in slo.alerts):
                source = SloAlertSource(self, slo, severity)
                self.sources[source.name] = source
        self.lookback = self.lag + max(
            (rule.long_seconds for slo in spec.slos for rule in slo.alerts), default=0.0
        )
        self.error: str | None = None
        self.reads = 0
        self._reset()

    def _reset(self) -> None:
        self.series: dict[str, Series] = {slo.name: Series(MINUTE) for slo in self.spec.slos}
        self.stats = SourceStats(quarantine=self.quarantine_path)
        self._seen: dict[str, tuple[int, int]] = {}
        self._results: dict[str, tuple[float, SloResult]] = {}
        self._quarantine = Quarantine(self.quarantine_path)

    def read(self, not_before: float | None = None) -> int:
        """Read the files not read before; return how many were read.

        Files whose AWS name says they end (well) before `not_before` are skipped: no alert
        window reaching back from a later evaluation can use them. A file read before that has
        changed since (ALB never rewrites a delivered file) makes every file be read again.
        Raises FileNotFoundError / ValueError for paths that hold no logs, OSError for a file
        that cannot be read, ValueError when the query fails; `error` keeps the message.
        """
        try:
            return self._read(not_before)
        except (OSError, ValueError) as exc:
            self.error = str(exc)
            raise

    def _read(self, not_before: float | None) -> int:
        listed = find_log_files(self.paths)
        if not_before is not None:
            listed = [f for f in listed if not _ends_before(f, not_before)]
        signatures: dict[str, tuple[int, int]] = {}
        for path in listed:
            try:
                info = os.stat(path)
            except FileNotFoundError:
                continue  # removed since it was listed
            signatures[path] = (info.st_size, info.st_mtime_ns)
        if any(self._seen.get(f, sig) != sig for f, sig in signatures.items()):
            self._quarantine.close()
            self._reset()  # counted parts of a changed file cannot be taken back: start over
        todo = [f for f in signatures if f not in self._seen]
        if not todo:
            self.reads += 1
            self.error = None
            return 0
        scan = scan_alb(
            todo, [counter_for(slo) for slo in self.spec.slos], quarantine=self._quarantine
        )
        for slo in self.spec.slos:
            target = self.series[slo.name]
            for start, bucket in scan.series[slo.name]:
                target.merge(start + MINUTE / 2, bucket.count, bucket.total)
        stats, found = self.stats, scan.source
        stats.files += len(todo)
        stats.lines += found.lines
        stats.parsed += found.parsed
        stats.malformed = self._quarantine.count
        if found.first is not None:
            stats.first = found.first if stats.first is None else min(stats.first, found.first)
        if found.last is not None:
            stats.last = found.last if stats.last is None else max(stats.last, found.last)
        self._seen.update((f, signatures[f]) for f in todo)
        self._results.clear()
        self.reads += 1
        self.error = None
        return len(todo)

    def trim(self, before: float) -> None:
        """Forget the minutes no alert evaluated at or after `before` can reach (bounds the
        memory of a long `watch`)."""
        for series in self.series.values():
            series.drop_before(before - self.lookback - MINUTE)

    def result(self, slo: SloDefinition, timestamp: float) -> SloResult | None:
        """`slo` evaluated with windows ending at the last whole minute at or before
        `timestamp - lag`; None before the first successful `read()`."""
        if self.reads == 0:
            return None
        end = math.floor((timestamp - self.lag) / MINUTE) * MINUTE
        cached = self._results.get(slo.name)
        if cached is not None and cached[0] == end:
            return cached[1]
        result = evaluate_slo(slo, self.series[slo.name], end, points=1)
        self._results[slo.name] = (end, result)
        return result

    def close(self) -> None:
        """Close the quarantine file."""
        self._quarantine.close()


def _ends_before(path: str, timestamp: float) -> bool:
    match = _AWS_END.search(os.path.basename(path))
    if match is None:
        return False
    end = datetime.strptime(match.group(1), "%Y%m%dT%H%M").replace(tzinfo=UTC).timestamp()
    return end + _SLACK < timestamp
