"""Benchmark: what alarms on SLO burn rates and on the engine's own metrics cost per period.

SLO children (`slo:<slo>:<severity>`), following live ALB logs, compared side by side:

- rescan:       read every file again each period (the simple way);
- incremental:  `SloAlerts.read()` after one period's new files arrive (what `watch` does);
- evaluate:     the page and ticket sources' states at one evaluation (per tick, both ways).

Alarms on engine metrics, from a SQLite store holding `--store-days` of per-minute buckets:

- live read:    one evaluation reading its lookback from the store in one query on the minute
                index (what `watch` does), against `metric_series` per alarm, whose query
                walks each metric's whole history;
- replay:       every minute of the store evaluated, the buckets read once (`replay`), against
                reading the store at every tick as `watch` does.

    python bench/alarm_sources.py                  # 1 day of ALB logs, 7 days of buckets
    python bench/alarm_sources.py --lines 100000   # quick run
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from sagaway.engine.metrics import labels  # noqa: E402
from sagaway.observe.alarms import EngineMetricReader, Monitor, parse_config  # noqa: E402
from sagaway.observe.metrics import metric_series  # noqa: E402
from sagaway.observe.slo import SloAlerts, parse_slo_spec  # noqa: E402
from sagaway.store import open_store  # noqa: E402

SPEC = """\
service: shop
slos:
  - name: api-availability
    objective: 99.9
    window: 30d
    indicator: {type: availability, bad_status: ["5xx"]}
    filter: {host: shop.example.com, path_prefix: /api/}
  - name: api-latency
    objective: 99
    window: 30d
    indicator: {type: latency, threshold: 0.3}
"""
ENGINE_ALARMS = """
alarms:
  - {name: compensating, engine_metric: runs_finished,
     where: {saga: checkout, status: compensated}, threshold: 5, evaluation_periods: 3,
     datapoints_to_alarm: 2, treat_missing: notBreaching}
  - {name: slow-runs, engine_metric: runs_finished, where: {saga: checkout}, statistic: max,
     threshold: 30, period: 300, treat_missing: notBreaching}
  - {name: retries, engine_metric: retries, threshold: 50, treat_missing: notBreaching}
"""


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_alb", HERE / "gen_alb.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_alb"] = module
    spec.loader.exec_module(module)
    return module


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def slo_part(work: Path, lines: int, days: float) -> list[tuple[str, str, str, str]]:
    gen = load_generator()
    start = datetime(2024, 5, 1, tzinfo=UTC)
    end = start + timedelta(days=days)
    last_block = end - timedelta(minutes=5)
    per_minute = lines / (days * 1440)
    alb = work / "alb"
    incident = gen.Incident.parse("at=2024-05-01T14:00Z,for=45m,errors=0.2,path=/api/")
    before = gen.generate(
        str(alb), lines - round(per_minute * 5), start, days - 5 / 1440, incidents=[incident]
    )
    spec = parse_slo_spec(SPEC)
    live = SloAlerts(spec, [str(alb)], quarantine=str(work / "q.jsonl"))
    live.read()
    new = gen.generate(str(alb), round(per_minute * 5), last_block, 5 / 1440, seed=11)
    incremental, count = timed(lambda: live.read())
    assert count == len(new), (count, len(new))

    def rescan() -> int:
        fresh = SloAlerts(spec, [str(alb)], quarantine=str(work / "q2.jsonl"))
        return fresh.read()

    full, files = timed(rescan)
    ticks = [end.timestamp() - 60 * i for i in range(1440)]
    sources = list(live.sources.values())

    def evaluate() -> None:
        for tick in ticks:
            for source in sources:
                source.state_at(tick)

    per_tick, _ = timed(evaluate)
    rows = [
        ("SLO counts up to date, per period: rescan", f"{files} files", f"{full:.3f}", "1.0x"),
        (
            "SLO counts up to date, per period: incremental",
            f"{len(new)} files",
            f"{incremental:.3f}",
            f"{full / incremental:.0f}x",
        ),
        (
            f"SLO sources' states, per tick ({len(sources)} sources)",
            f"{len(before) + len(new)} files read",
            f"{per_tick / len(ticks):.5f}",
            "",
        ),
    ]
    return rows


def engine_part(work: Path, days: int) -> list[tuple[str, str, str, str]]:
    url = f"sqlite:///{work}/bench.db"
    store = open_store(url)
    now_minute = int(time.time() // 60)
    first = now_minute - days * 1440
    statuses = ("succeeded", "compensated", "failed", "cancelled")
    sagas = ("checkout", "refund", "restock")
    rows = []
    for minute in range(first, now_minute):
        for saga in sagas:
            for status in statuses:
                rows.append(
                    ("runs_finished", labels(saga=saga, status=status), minute, 3, 6.0, 1.0, 3.0)
                )
            rows.append(("retries", labels(saga=saga, step="charge"), minute, 2, 2.0, 1.0, 1.0))
        if len(rows) > 50_000:
            store.add_metrics(rows)
            rows = []
    store.add_metrics(rows)
    stored = len(store.metric_rows(None, 0))
    config = parse_config(ENGINE_ALARMS)

    def live_once() -> None:
        reader = EngineMetricReader(store)
        monitor = Monitor(config, engine=reader)
        monitor.start_at(now_minute * 60 - 1)
        monitor.evaluate_until(now_minute * 60)

    live, _ = timed(live_once, repeat=20)

    def per_alarm_history() -> None:
        # The simple way: `metric_series` per alarm, whose query walks the metric's whole
        # history by its primary key (name, labels, minute).
        for ref in config.engine.values():
            metric_series(store, ref.metric, ref.labels, since=now_minute * 60 - 600)

    naive, _ = timed(per_alarm_history, repeat=5)

    def replay() -> None:
        monitor = Monitor(config, engine=EngineMetricReader(store, cache=True))
        monitor.start_at(first * 60)
        monitor.evaluate_until(now_minute * 60)

    whole = days * 1440
    cached, _ = timed(replay)
    # Reading the store at every tick: its query reads every bucket after the tick's lookback,
    # so the cost depends on the tick; sample ticks spread evenly over the range.
    sample = [first + 30 + i * whole // 24 for i in range(24)]

    def per_tick() -> None:
        for minute in sample:
            monitor = Monitor(config, engine=EngineMetricReader(store))
            monitor.start_at(minute * 60 - 1)
            monitor.evaluate_until(minute * 60)

    uncached, _ = timed(per_tick)
    estimate = uncached / len(sample) * whole
    store.close()
    return [
        (
            "engine alarms, one evaluation, `metric_series` per alarm",
            f"3 alarms, {stored} buckets",
            f"{naive:.4f}",
            "1.0x",
        ),
        (
            "engine alarms, one evaluation, one query on the minute index (watch)",
            f"3 alarms, {stored} buckets",
            f"{live:.4f}",
            f"{naive / live:.0f}x",
        ),
        (
            f"replay of {days} days, store read once",
            f"{whole} ticks",
            f"{cached:.2f}",
            f"{estimate / cached:.0f}x",
        ),
        (
            f"replay of {days} days, store read at every tick (from {len(sample)} ticks)",
            f"{whole} ticks",
            f"{estimate:.2f}",
            "1.0x",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=300_000, help="ALB log lines (1 day)")
    parser.add_argument("--days", type=float, default=1.0, help="days of ALB logs")
    parser.add_argument("--store-days", type=int, default=7, help="days of engine buckets")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sagaway-bench-alarms-"))
    try:
        rows = slo_part(work, args.lines, args.days) + engine_part(work, args.store_days)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"python {' '.join(sys.argv)}  ({os.cpu_count()} CPUs)")
    print()
    print("| what | size | seconds | speed-up |")
    print("| --- | --- | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
