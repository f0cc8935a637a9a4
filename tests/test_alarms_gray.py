"""Gray-failure sources: callers' step metrics (recorded by real saga runs, or written through
the store's metrics API) against a real health endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sagaway import Permanent, SagaCompensated
from sagaway.errors import ConfigurationError
from sagaway.observe import AlarmState
from sagaway.observe.alarms import (
    AlarmDefinitionError,
    EngineMetricReader,
    GrayFailureSource,
    Monitor,
    Probe,
    parse_config,
)
from sagaway.store import open_store
from tests.servers import WebhookServer

OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA


class HealthServer:
    """A dependency's /health: answers `status` (200 unless changed) after `delay` seconds."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        self.asked = 0
        owner = self
        self._release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.asked += 1
                if owner.delay:
                    owner._release.wait(owner.delay)
                body = b'{"status":"ok"}' if owner.status == 200 else b'{"status":"down"}'
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/health"

    def __enter__(self) -> HealthServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()  # a delayed answer in flight ends now
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health():
    with HealthServer() as server:
        yield server


def run_charges(app, failing: bool, count: int = 8) -> None:
    """Real checkouts whose `charge` step fails (every try) or succeeds."""

    @app.step
    def charge(n):
        if failing:
            raise Permanent("payment provider timed out")
        return n

    @app.saga()
    def checkout(ctx, n):
        return charge(n)

    with app:
        runs = [app.start(checkout, n) for n in range(count)]
        for run in runs:
            try:
                run.result(timeout=20)
            except SagaCompensated:
                pass
    app.recorder.flush()


def config_for(url: str, **extra: object) -> str:
    lines = "".join(f"    {key}: {value}\n" for key, value in extra.items())
    return (
        "gray_failures:\n"
        "  - name: payments-gray\n"
        "    saga: checkout\n"
        "    step: charge\n"
        "    error_rate: 0.3\n"
        "    min_calls: 1\n"
        f"    probe: {url}\n" + lines
    )


def evaluate_around_now(app, config) -> tuple[Monitor, str]:
    """Evaluate every minute from two minutes ago to the next boundary after now; the
    monitor and what the source said at each evaluation."""
    monitor = Monitor(config, engine=EngineMetricReader(app.store))
    source = config.gray_failures["payments-gray"]
    now = time.time()
    monitor.start_at(now - 120)
    said = []
    while monitor.next_tick is not None and monitor.next_tick <= now + 60:
        tick = monitor.next_tick
        monitor.evaluate_until(tick)
        said.append(source.explain(tick))
    return monitor, " | ".join(said)


# --- the callers' view from real runs, the probe from a real server ------------------------


def test_callers_failing_while_the_probe_says_ok_is_a_gray_failure(app, health):
    run_charges(app, failing=True)
    config = parse_config(config_for(health.url, notify="[]"))
    monitor, _ = evaluate_around_now(app, config)
    assert monitor.states["payments-gray"] == ALARM
    alarm = next(t for t in monitor.transitions if t.state == ALARM)
    assert "gray failure: callers: 100% of checkout/charge calls failed over 60 s" in alarm.reason
    assert f"probe {health.url}: 200 OK" in alarm.reason
    # State monitoring and notifications treat it as any alarm: an incident opens.
    assert [(n.alarm, n.kind) for n in monitor.notifications][:1] == [("payments-gray", "ALARM")]
    assert health.asked >= 1


def test_callers_and_probe_both_failing_is_an_outage_not_gray(app, health):
    run_charges(app, failing=True)
    health.status = 503
    monitor, said = evaluate_around_now(app, parse_config(config_for(health.url)))
    assert ALARM not in [t.state for t in monitor.transitions]
    assert monitor.states["payments-gray"] == OK
    assert "100% of checkout/charge calls failed" in said
    assert "503 Service Unavailable: both say it fails, an outage, not gray" in said


def test_callers_fine_and_probe_fine_is_ok(app, health):
    run_charges(app, failing=False)
    monitor, said = evaluate_around_now(app, parse_config(config_for(health.url)))
    assert ALARM not in [t.state for t in monitor.transitions]
    assert monitor.states["payments-gray"] == OK
    assert "callers: 0% of checkout/charge calls failed" in said


def test_a_composite_can_use_a_gray_failure_as_a_child(app, health):
    run_charges(app, failing=True)
    text = config_for(health.url) + (
        "composites:\n  - name: page-payments\n    rule: ALARM(payments-gray)\n"
    )
    monitor, _ = evaluate_around_now(app, parse_config(text))
    assert monitor.states["page-payments"] == ALARM


# --- M of N, written through the store's metrics API ----------------------------------------


def write_minute(store, minute: int, calls: int, failed: int, seconds: float = 0.1) -> None:
    rows = []
    for outcome, count in (("ok", calls - failed), ("error", failed)):
        if count:
            label = f"outcome={outcome},saga=checkout,step=charge"
            rows.append(("step_seconds", label, minute, count, count * seconds, seconds, seconds))
    store.add_metrics(rows)


@pytest.fixture
def metric_store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'metrics.db'}")
    yield store
    store.close()


def gray_source(url: str, clock, **options) -> GrayFailureSource:
    options.setdefault("error_rate", 0.3)
    return GrayFailureSource(
        "payments-gray", saga="checkout", step="charge", probe=Probe(url), clock=clock, **options
    )


def test_m_of_n_periods_must_disagree_before_alarm(metric_store, health):
    base = 28_000_000  # a minute number; evaluations happen at the ends of minutes
    now = [0.0]
    source = gray_source(
        health.url, lambda: now[0], evaluation_periods=3, datapoints_to_alarm=2, min_calls=5
    )
    source.bind(EngineMetricReader(metric_store))
    # minute:      0 gray, 1 fine, 2 gray, 3 gray, 4 quiet (too few calls to judge)
    for offset, (calls, failed) in enumerate([(10, 5), (10, 0), (10, 6), (10, 9), (2, 2)]):
        write_minute(metric_store, base + offset, calls, failed)
    states = []
    for offset in range(5):
        now[0] = (base + offset + 1) * 60 + 3  # a few seconds after the minute ended
        states.append(source.state_at((base + offset + 1) * 60))
    assert states == [OK, OK, ALARM, ALARM, ALARM]
    reason = source.explain((base + 5) * 60)
    assert "callers: 2 call(s) of checkout/charge over 60 s, fewer than the 5 needed" in reason
    assert "[2 of the last 3 periods gray; needs 2 of 3]" in reason  # 1 quiet: one older
    # The probe is asked once per period, however often the state is read.
    asked = health.asked
    source.state_at((base + 5) * 60)
    source.explain((base + 5) * 60)
    assert health.asked == asked


def test_latency_alone_can_make_callers_see_failure(metric_store, health):
    base = 28_000_100
    source = gray_source(
        health.url, lambda: (base + 1) * 60.0, error_rate=None, latency=2.0, min_calls=1
    )
    source.bind(EngineMetricReader(metric_store))
    write_minute(metric_store, base, calls=4, failed=0, seconds=2.5)
    assert source.state_at((base + 1) * 60) == ALARM
    assert "0% of checkout/charge calls failed over 60 s (0 of 4), 2.5 s on average" in (
        source.explain((base + 1) * 60)
    )


def test_a_probe_that_does_not_answer_in_time_counts_as_unhealthy(metric_store, health):
    health.delay = 5.0
    base = 28_000_200
    source = gray_source(health.url, lambda: (base + 1) * 60.0, min_calls=1)
    source.probe = Probe(health.url, timeout=0.3)
    source.bind(EngineMetricReader(metric_store))
    write_minute(metric_store, base, calls=4, failed=4)
    started = time.monotonic()
    assert source.state_at((base + 1) * 60) == OK  # both say it fails: an outage
    assert time.monotonic() - started < 3.0  # bounded by the probe's timeout, not its delay
    assert f"probe {health.url}: no answer within 0.3 s" in source.explain((base + 1) * 60)


def test_an_unreachable_probe_counts_as_unhealthy(metric_store):
    server = HealthServer()
    url = server.url
    server.server.server_close()  # nobody listens on that port any more
    base = 28_000_300
    source = gray_source(url, lambda: (base + 1) * 60.0, min_calls=1)
    source.bind(EngineMetricReader(metric_store))
    write_minute(metric_store, base, calls=4, failed=4)
    assert source.state_at((base + 1) * 60) == OK
    assert f"probe {url}: unreachable" in source.explain((base + 1) * 60)


def test_periods_long_past_cannot_be_paired_with_a_probe_made_now(metric_store, health):
    base = 28_000_400
    source = gray_source(health.url, time.time, min_calls=1)
    source.bind(EngineMetricReader(metric_store))
    write_minute(metric_store, base, calls=4, failed=4)
    assert source.state_at((base + 1) * 60) == INSUFFICIENT
    assert "can only be asked how it is now" in source.explain((base + 1) * 60)
    assert health.asked == 0


def test_the_monitor_needs_a_store_for_gray_failures(health):
    config = parse_config(config_for(health.url))
    with pytest.raises(ValueError, match="payments-gray read engine metrics"):
        Monitor(config)


# --- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "gray_failures:\n  - name: g\n    step: charge\n    error_rate: 0.2\n",
            ":2: gray failure 'g': 'probe' is required",
        ),
        (
            "gray_failures:\n  - name: g\n    step: charge\n    probe: http://127.0.0.1:1/\n",
            "give error_rate (e.g. 0.2: a fifth of the calls failed) and/or latency",
        ),
        (
            "gray_failures:\n  - name: g\n    step: charge\n    error_rate: 20\n"
            "    probe: http://127.0.0.1:1/\n",
            "error_rate 20.0 must be a fraction in (0, 1] (20 % is 0.2)",
        ),
        (
            "gray_failures:\n  - name: g\n    step: charge\n    error_rate: 0.2\n"
            "    probe: 127.0.0.1:1/health\n",
            ":5: gray failure 'g': probe '127.0.0.1:1/health' must be an http:// or https:// URL",
        ),
        (
            "gray_failures:\n  - name: g\n    step: charge\n    error_rate: 0.2\n"
            "    probe: http://127.0.0.1:1/\n    probe_timeout: 0\n",
            ":6: gray failure 'g': probe_timeout 0.0 must be in (0, 60] seconds",
        ),
        (
            "period: 30\ngray_failures:\n  - name: g\n    step: charge\n    error_rate: 0.2\n"
            "    probe: http://127.0.0.1:1/\n    period: 90\n",
            "period 90s: engine metrics are kept per minute",
        ),
        (
            "gray_failures:\n  - name: g\n    step: charge\n    error_rate: 0.2\n"
            "    probe: http://127.0.0.1:1/\n    evaluation_periods: 2\n"
            "    datapoints_to_alarm: 3\n",
            "datapoints_to_alarm (M) must be an integer with 1 <= M <= N",
        ),
        (
            "gray_failures:\n  - name: g\n    step: charge\n    eror_rate: 0.2\n"
            "    probe: http://127.0.0.1:1/\n",
            "unknown key 'eror_rate'; did you mean 'error_rate'?",
        ),
        (
            "alarms: [{name: g, engine_metric: retries, threshold: 1}]\ngray_failures:\n"
            "  - {name: g, step: charge, error_rate: 0.2, probe: 'http://127.0.0.1:1/'}\n",
            "source name 'g' is used more than once",
        ),
    ],
)
def test_bad_gray_failure_config_names_the_key_and_line(text, fragment):
    with pytest.raises(ConfigurationError) as caught:
        parse_config(text)
    assert fragment in str(caught.value)


def test_bad_definitions_in_code_are_refused():
    with pytest.raises(AlarmDefinitionError, match="min_calls 0 must be an int >= 1"):
        GrayFailureSource("g", step="charge", probe=Probe("http://x/"), latency=1, min_calls=0)
    with pytest.raises(AlarmDefinitionError, match="latency -1 must be > 0 seconds"):
        GrayFailureSource("g", step="charge", probe=Probe("http://x/"), latency=-1)


# --- end to end: `sagaway alarms check` and `watch`, notifying a real webhook ---------------


def test_watch_notifies_a_gray_failure_through_a_webhook(tmp_path, health):
    # The callers' last minute, as every sagaway process writes it: buckets in the store.
    url = f"sqlite:///{tmp_path}/shop.db"
    store = open_store(url)
    minute = int(time.time() // 60)
    write_minute(store, minute - 1, calls=40, failed=15)
    store.close()
    config = tmp_path / "alarms.yaml"
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((minute - 1) * 60))
    with WebhookServer() as hook:
        config.write_text(
            config_for(health.url, min_calls=10, notify="[ops]")
            + f'notifiers:\n  - {{name: ops, type: webhook, url: "{hook.url}/hook"}}\n'
        )
        check = subprocess.run(
            [sys.executable, "-m", "sagaway.cli", "alarms", "check", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        watcher = subprocess.Popen(
            [
                *(sys.executable, "-m", "sagaway.cli", "alarms", "watch"),
                *("--config", str(config), "--db", url, "--from", start, "--poll", "0.05"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.time() + 30
            while not hook.delivered() and time.time() < deadline:
                time.sleep(0.05)
        finally:
            watcher.send_signal(signal.SIGTERM)
            _, err = watcher.communicate(timeout=30)
        received = hook.delivered()
    assert check.returncode == 0, check.stderr
    assert "gray       payments-gray: callers of checkout/charge see error rate >= 0.3" in (
        check.stdout
    )
    assert watcher.returncode == 0, err
    assert [(n["alarm"], n["kind"]) for n in received] == [("payments-gray", "ALARM")]
    summary = json.dumps(received[0])
    assert "38% of checkout/charge calls failed over 60 s (15 of 40)" in summary
    assert f"probe {health.url}: 200 OK" in summary
