"""The SLO and metrics views: SLO reports from a slo.yaml and ALB access logs, computed at
most once per refresh period however many people look, and the engine's metrics in
Prometheus' exposition format."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any

from sagaway.api.settings import ApiSettings
from sagaway.observe import SloReport, load_slo_spec, report_from_alb
from sagaway.store.base import Store

__all__ = ["SloViews", "prometheus_text"]


def _observe_slo() -> Any:
    """The SLO subpackage of `sagaway.observe` (report_html, report_json live there)."""
    from sagaway.observe import slo

    return slo


def prometheus_text(store: Store) -> bytes:
    """The engine's metrics, summed over every process of the store, as Prometheus text."""
    from prometheus_client import CollectorRegistry, generate_latest

    from sagaway.observe import metrics

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.StoreCollector(store))
    return generate_latest(registry)


class SloViews:
    """The latest SLO report, recomputed when older than `settings.slo_refresh` seconds."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._report: SloReport | None = None
        self._problem: str | None = None
        self._at = 0.0

    @property
    def configured(self) -> bool:
        """Whether a slo.yaml and access logs were given."""
        return bool(self.settings.slo_spec and self.settings.alb_logs)

    def note(self) -> str | None:
        """Why there is no report, for people (None when there is one)."""
        if not self.configured:
            return (
                "no SLOs configured: start `sagaway serve` with --slo slo.yaml and --alb-logs "
                "DIR (or pass ApiSettings(slo_spec=..., alb_logs=...) to create_app)"
            )
        self.report()
        return self._problem

    def report(self) -> SloReport | None:
        """The current report, or None (see `note`)."""
        if not self.configured:
            return None
        with self._lock:
            if time.monotonic() - self._at >= self.settings.slo_refresh or self._at == 0.0:
                self._refresh()
            return self._report

    def _refresh(self) -> None:
        quarantine = os.path.join(tempfile.gettempdir(), f"sagaway-api-{os.getpid()}.jsonl")
        try:
            spec = load_slo_spec(self.settings.slo_spec or "")
            self._report = report_from_alb(
                spec, list(self.settings.alb_logs), quarantine_path=quarantine
            )
            self._problem = None
        except (OSError, ValueError) as exc:  # a missing log folder, a broken spec
            self._report, self._problem = None, f"cannot compute the SLO report: {exc}"
        self._at = time.monotonic()

    def as_json(self) -> dict[str, Any]:
        """The report as the SLO command's JSON (`slos` empty, with a `note`, without one)."""
        report = self.report()
        if report is None:
            return {"slos": [], "note": self.note()}
        return {**_observe_slo().report_json(report), "note": None}

    def as_html(self) -> str | None:
        """The HTML report with its burn-down and burn-rate charts, or None."""
        report = self.report()
        return None if report is None else _observe_slo().report_html(report)


class AlarmViews:
    """Alarm states and incident timelines for the alarm views.

    With `settings.alarms` (an alarms.yaml), its engine-metric alarms and the composites over
    them are evaluated here, from the store, every period by a thread of the server's own;
    nobody is notified from here (that is `sagaway alarms watch`'s job). A `Monitor` run
    elsewhere in the process can be shown instead with `attach`.
    """

    def __init__(self, settings: ApiSettings, store: Store) -> None:
        self.settings = settings
        self.monitor: Any = None
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if settings.alarms:
            self._start(settings.alarms, store)

    def _start(self, path: str, store: Store) -> None:
        from sagaway.observe.alarms import EngineMetricReader, Monitor, load_config

        config = load_config(path)  # a broken file stops the server from starting: say so
        reader = EngineMetricReader(store, cache=False) if config.reads_engine else None
        monitor = Monitor(config, None, engine=reader)
        monitor.start_at(time.time())
        self.monitor = monitor
        if config.filters:
            self.problem = (
                "alarms on log lines need the log files: they stay INSUFFICIENT_DATA here; "
                "`sagaway alarms watch --logs ...` evaluates them"
            )
        self._thread = threading.Thread(target=self._evaluate, name="sagaway-api-alarms")
        self._thread.daemon = True
        self._thread.start()

    def _evaluate(self) -> None:
        grace = 5.0  # metric buckets reach the store every two seconds
        while not self._stop.wait(min(5.0, float(self.monitor.tick))):
            try:
                with self._lock:
                    self.monitor.evaluate_until(time.time() - grace)
            except Exception as exc:  # the store went away for a while: say so, go on
                self.problem = f"evaluating the alarms failed: {exc}"

    def attach(self, monitor: Any) -> None:
        """Show the alarms of `monitor` (an observe Monitor, evaluated by its owner)."""
        self.monitor = monitor

    def close(self) -> None:
        """Stop evaluating."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def as_json(self) -> dict[str, Any]:
        """Each alarm's state and last reason, its transitions and its incidents."""
        monitor = self.monitor
        if monitor is None:
            return {
                "items": [],
                "note": "no alarms evaluated by this server: start `sagaway serve` with "
                "--alarms alarms.yaml (or ApiSettings(alarms=...))",
            }
        with self._lock:
            transitions = [t.to_dict() for t in monitor.transitions]
            notes = [n.to_dict() for n in monitor.notifications]
            states = dict(monitor.states)
        items = []
        for name, state in states.items():
            mine = [t for t in transitions if t["alarm"] == name]
            items.append(
                {
                    "name": name,
                    "state": str(getattr(state, "value", state)),
                    "reason": mine[-1]["reason"] if mine else None,
                    "transitions": mine[-50:],
                    "incidents": [n for n in notes if n["alarm"] == name][-50:],
                }
            )
        return {"items": items, "note": self.problem}
