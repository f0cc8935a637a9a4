"""The engine's own metrics: per-minute buckets in the store, Prometheus exposition."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sagaway import App, ConfigurationError, Permanent, SagaCompensated
from sagaway.engine.metrics import MinuteRecorder
from sagaway.observe.metrics import StoreCollector, metric_series, serve_metrics
from tests.conftest import wait_for
from tests.processes import ROOT


def run_some(app):
    @app.step
    def reserve(n):
        return n

    @reserve.compensation
    def release(n):
        pass

    @app.step
    def charge(n):
        if n % 3 == 0:
            raise Permanent("declined")
        return n

    @app.saga()
    def checkout(ctx, n):
        reserve(n)
        return charge(n)

    with app:
        for n in range(6):
            run = app.start(checkout, n)
            try:
                run.result(timeout=10)
            except SagaCompensated:
                pass
    app.recorder.flush()


def test_runs_steps_and_compensations_are_recorded_per_minute_in_the_store(app):
    run_some(app)
    finished = metric_series(app.store, "runs_finished")
    assert sum(b.count for _, b in finished) == 6
    compensated = metric_series(app.store, "runs_finished", {"status": "compensated"})
    assert sum(b.count for _, b in compensated) == 2
    steps = metric_series(app.store, "step_seconds", {"step": "charge"})
    assert sum(b.count for _, b in steps) == 6
    assert sum(b.count for _, b in metric_series(app.store, "compensations")) == 2
    with pytest.raises(ValueError, match="unknown engine metric 'nope'"):
        metric_series(app.store, "nope")


def test_prometheus_exposition_sums_every_process_and_reads_gauges_live(app):
    run_some(app)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(app.store))
    text = generate_latest(registry).decode()
    assert 'sagaway_runs_finished_total{saga="checkout",status="compensated"} 2.0' in text
    assert 'sagaway_runs_finished_total{saga="checkout",status="succeeded"} 4.0' in text
    assert 'sagaway_step_seconds_count{saga="checkout",step="charge"} 6.0' in text
    assert 'sagaway_step_seconds_bucket{le="+Inf",saga="checkout",step="reserve"} 6.0' in text
    assert 'sagaway_runs{status="compensated"} 2.0' in text
    assert "sagaway_queue_depth 0.0" in text


def test_metrics_serve_answers_on_127_0_0_1(app):
    run_some(app)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_metrics(app.store, "127.0.0.1", port)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        server.shutdown()
    assert b"sagaway_runs_started_total" in body


def test_a_failed_write_keeps_the_buckets_for_the_next_flush():
    written, fail = [], [True]

    def write(rows):
        if fail[0]:
            fail[0] = False
            raise OSError("disk full")
        written.extend(rows)

    recorder = MinuteRecorder(write, flush_every=3600)
    recorder.started("checkout")
    recorder.started("checkout")
    recorder.flush()
    assert written == []
    recorder.started("checkout")
    recorder.close()
    assert [(name, count) for name, _labels, _m, count, *_ in written] == [("runs_started", 3)]


def _bucket(name, minute):
    return (name, "saga=checkout", minute, 1, 1.0, 1.0, 1.0)


def test_pruning_deletes_only_buckets_older_than_the_cutoff_a_day_at_a_time(app):
    now = int(time.time() // 60)
    old = [_bucket("runs_started", now - 1440 * days) for days in (400, 39, 3)]
    recent = [_bucket("runs_started", now - 5), _bucket("retries", now)]
    app.store.add_metrics(old + recent)
    assert app.store.prune_metrics(now - 1440 * 2, stop=lambda: True) == 0  # asked to stop
    batches_before = app.store.commit_stats[0]
    assert app.store.prune_metrics(now - 1440 * 2) == 3
    # A transaction per day that has buckets (at most a day of minutes each), not one per
    # day between the oldest bucket and the cutoff.
    assert app.store.commit_stats[0] - batches_before == 3
    left = {(row[0], row[2]) for row in app.store.metric_rows()}
    assert left == {("runs_started", now - 5), ("retries", now)}
    assert app.store.prune_metrics(now - 1440 * 2) == 0


def test_the_recorder_prunes_past_the_retention_at_its_first_flush(make_app):
    app = make_app(metrics_retention_days=1)
    now = int(time.time() // 60)
    app.store.add_metrics([_bucket("runs_started", now - 2 * 1440), _bucket("retries", now - 60)])
    app.recorder.flush_every = 0.05
    app.recorder.observe("runs_started", "saga=checkout")  # starts the flusher

    def minutes():
        return {row[2] for row in app.store.metric_rows()}

    wait_for(lambda: now - 2 * 1440 not in minutes(), what="the two-day-old bucket pruned")
    assert now - 60 in minutes()
    assert app.prune_metrics() == 0


def test_retention_must_be_positive_or_none(make_app):
    for bad in (0, -1, 0.5):
        with pytest.raises(
            ConfigurationError, match=r"metrics_retention_days=.*1 or more, or None"
        ):
            make_app(metrics_retention_days=bad)
    keep_all = make_app(metrics_retention_days=None)
    keep_all.store.add_metrics([_bucket("runs_started", 1)])
    assert keep_all.prune_metrics() == 0
    assert len(keep_all.store.metric_rows()) == 1


def test_leaving_with_app_writes_the_last_buckets(app):
    @app.step
    def noop():
        return None

    @app.saga()
    def tiny(ctx):
        noop()

    with app:
        app.start(tiny).result(timeout=10)
    # No flush asked for, and the flusher (every 2 s) has not run yet.
    assert sum(row[3] for row in app.store.metric_rows("runs_finished")) == 1


def test_a_process_that_only_starts_runs_stores_its_metrics_when_it_exits(store_url, tmp_path):
    script = (
        "import sys\n"
        "from sagaway import App\n"
        "app = App(sys.argv[1])\n"
        "@app.saga()\n"
        "def checkout(ctx, n):\n"
        "    return n\n"
        "for n in range(3):\n"
        "    app.start(checkout, n)\n"
        # No app.close(), no worker: a web handler or a cron job that returns at once.
    )
    subprocess.run([sys.executable, "-c", script, store_url], check=True, cwd=ROOT, timeout=60)
    reader = App(store_url)
    try:
        assert sum(row[3] for row in reader.store.metric_rows("runs_started")) == 3
        assert len(reader.runs()) == 3
    finally:
        reader.close()
