"""Cron schedules: one run per tick across any number of workers, catch-up after downtime."""

import itertools
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from sagaway import App, ConfigurationError
from tests.processes import ROOT


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def nightly_app(make_app, catch_up="latest"):
    app = make_app()

    @app.schedule("0 3 * * *", tz="Asia/Tokyo", catch_up=catch_up)
    @app.saga()
    def nightly(ctx, tick=None):
        return tick

    return app


def test_ticks_are_in_the_schedules_time_zone(make_app):
    app = nightly_app(make_app)
    schedule = app.schedules["nightly"]
    # 03:00 in Tokyo is 18:00 UTC the day before.
    assert schedule.next_tick(at("2026-12-06T12:00:00")) == at("2026-12-06T18:00:00")
    assert schedule.key(at("2026-12-06T18:00:00")) == "schedule:nightly:2026-12-06T18:00:00Z"


@pytest.mark.parametrize(
    ("catch_up", "started"),
    [
        ("latest", ["2026-12-05T18:00:00"]),
        ("all", ["2026-12-03T18:00:00", "2026-12-04T18:00:00", "2026-12-05T18:00:00"]),
        ("none", []),
    ],
)
def test_ticks_missed_during_downtime_follow_the_catch_up_policy(make_app, catch_up, started):
    app = nightly_app(make_app, catch_up)
    runner = app._schedule_runner
    runner.tick(at("2026-12-02T18:00:10"))  # nothing ran before: no backfill of history
    assert app.runs() == []
    runner._anchor = at("2026-12-02T17:00:00")
    runner.tick(at("2026-12-02T18:00:10"))  # on time: started whatever the policy
    # Three days without a worker, back 20 minutes after a tick.
    runner.tick(at("2026-12-05T18:20:00"))
    keys = sorted(r.key for r in app.runs())
    expected = ["schedule:nightly:2026-12-02T18:00:00Z"] + [
        f"schedule:nightly:{tick}Z" for tick in started
    ]
    assert keys == expected
    run = app.get(app.runs()[0].id)
    assert run.input == {"args": [], "kwargs": {"tick": run.key.split(":", 2)[2][:-1] + "+00:00"}}


def test_three_apps_seeing_the_same_ticks_start_one_run_each(make_app):
    apps = [nightly_app(make_app) for _ in range(3)]
    for app in apps:
        app._schedule_runner._anchor = at("2026-12-01T00:00:00")
    ticks = [at("2026-12-01T18:00:05") + timedelta(days=n) for n in range(5)]

    def worker(app):
        for now in ticks:
            app._schedule_runner.tick(now)

    threads = [threading.Thread(target=worker, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    keys = [r.key for r in apps[0].runs()]
    assert len(keys) == 5 and len(set(keys)) == 5


def test_bad_schedules_are_refused_with_the_fix(make_app):
    app = make_app()

    @app.saga()
    def needs(ctx, order):
        return order

    @app.saga()
    def fine(ctx):
        return 1

    with pytest.raises(ConfigurationError, match="five fields"):
        app.schedule("61 * * * *")(fine)
    with pytest.raises(ConfigurationError, match="unknown time zone 'Mars/Base'"):
        app.schedule("0 3 * * *", tz="Mars/Base")(fine)
    with pytest.raises(ConfigurationError, match="catch_up='some'"):
        app.schedule("0 3 * * *", catch_up="some")(fine)
    with pytest.raises(ConfigurationError, match="requires order"):
        app.schedule("0 3 * * *")(needs)
    with pytest.raises(ConfigurationError, match=r"above @app\.saga"):
        app.schedule("0 3 * * *")(lambda ctx: None)
    assert app.schedules == {}


WORKER_APP = """
import itertools
import os
from sagaway import App

app = App(os.environ["SAGAWAY_DB"])

# every two seconds (a sixth field: seconds); "all": a tick a loaded machine reaches late
# still gets its run, so the test sees every tick whatever the load
@app.schedule("* * * * * */2", catch_up="all")
@app.saga()
def every_two(ctx, tick=None):
    return tick
"""


def test_three_worker_processes_start_exactly_one_run_per_tick(tmp_path):
    (tmp_path / "ticking.py").write_text(WORKER_APP)
    db = tmp_path / "ticks.db"
    env = {**os.environ, "SAGAWAY_DB": str(db), "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "sagaway.cli", "worker", "ticking:app", "--quiet"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    app = App(f"sqlite:///{db}")
    try:

        def five_done() -> bool:
            if not db.exists():
                return False
            return len(app.runs(status="succeeded", limit=1000)) >= 5

        deadline = time.monotonic() + 90  # imports of three processes on a loaded machine
        while not five_done():
            assert time.monotonic() < deadline, "five ticks' runs did not finish in 90 s"
            assert all(p.poll() is None for p in workers), "a worker process exited"
            time.sleep(0.2)
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(20)
    try:
        keys = sorted(r.key for r in app.runs(limit=1000))
    finally:
        app.close()
    assert len(keys) >= 5
    ticks = [datetime.fromisoformat(k.split(":", 2)[2].replace("Z", "+00:00")) for k in keys]
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(ticks)}
    assert gaps == {2.0}  # every tick once: none twice, none skipped
