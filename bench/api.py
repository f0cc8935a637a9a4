"""The API's reads at scale: with --runs runs in the store (1,000,000 by default), the runs
list (newest first, filtered by status and saga, paged with the cursor), a run's page and
search by key, on SQLite and PostgreSQL. Times are server-side: the `Server-Timing` header
each response carries (the ASGI application is called in process, no network).

Runs are written with bulk SQL (a recursive CTE on SQLite, generate_series on PostgreSQL):
10 sagas, keys "order-<n>", 90 % succeeded, 5 % failed, 3 % waiting, 2 % compensated; five
journal entries each for the 500 runs whose pages are opened.

    python bench/api.py                         # 1,000,000 runs, both backends
    python bench/api.py --runs 100000 --backend sqlite
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

from fastapi.testclient import TestClient

from sagaway import App
from sagaway.api import create_app
from sagaway.api.access import issue_token
from sagaway.store import open_store

POSTGRES = os.environ.get("SAGAWAY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SAMPLES = 400
STATUS_SQL = (
    "CASE WHEN n % 100 < 90 THEN 'succeeded' WHEN n % 100 < 95 THEN 'failed' "
    "WHEN n % 100 < 98 THEN 'waiting' ELSE 'compensated' END"
)
RUN_INSERT = (
    "INSERT INTO sagaway_runs (id, saga, idem_key, input, input_hash, status, created_at, "
    "updated_at) SELECT {id}, 'saga' || (n % 10), 'order-' || n, '{{}}', 'h', "
    f"{STATUS_SQL}, {{t0}} + n * 0.01, {{t0}} + n * 0.01 FROM {{series}}"
)


def fill(store, runs: int, postgres: bool) -> list[str]:
    """Write `runs` runs in one transaction; return the ids of those with a journal."""
    t0 = time.time() - runs * 0.01
    if postgres:
        series = f"generate_series(0, {runs - 1}) AS n"
        run_id = "lpad(to_hex(n), 12, '0')"
    else:
        series = (
            "(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s "
            f"WHERE n < {runs - 1}) SELECT n FROM s)"
        )
        run_id = "printf('%012x', n)"
    journaled = list(range(0, runs, max(1, runs // 500)))
    keys = ",".join(f"'order-{n}'" for n in journaled)
    with store._write_transaction() as conn:
        sql = RUN_INSERT.format(id=run_id, t0=t0, series=series)
        conn.execute(sql.replace("%", "%%") if postgres else sql)
        for position in range(5):
            conn.execute(
                "INSERT INTO sagaway_journal (run_id, position, phase, kind, name, status, "
                "result, attempts, started_at, finished_at) "
                f"SELECT id, {position}, 0, 'step', 's{position}', 'ok', '1', 1, created_at, "
                f"created_at FROM sagaway_runs WHERE idem_key IN ({keys})"
            )
        conn.execute("ANALYZE")
    return [f"{n:012x}" for n in journaled]


def pick(ids: list[str]) -> str:
    return random.choice(ids)


def key(runs: int) -> str:
    return f"order-{random.randrange(runs)}"


def server_ms(response) -> float:
    assert response.status_code == 200, response.text
    return float(response.headers["server-timing"].split("dur=")[1])


def p99(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


def measure(url: str, runs: int, postgres: bool) -> None:
    store = open_store(url)
    started = time.perf_counter()
    journaled = fill(store, runs, postgres)
    print(f"  filled {runs:,} runs in {time.perf_counter() - started:.1f} s")
    app = App(store=store, record_metrics=False)
    token = issue_token(store, "viewer", "bench", "bench")[1]
    client = TestClient(create_app(app))
    headers = {"Authorization": f"Bearer {token}"}

    def get(path: str, params: dict | None = None) -> float:
        return server_ms(client.get(path, params=params, headers=headers))

    def paged() -> Iterator[float]:
        cursor: dict[str, str] = {}
        while True:
            params = {"status": "failed", "limit": 50, **cursor}
            response = client.get("/api/v1/runs", params=params, headers=headers)
            yield server_ms(response)
            following = response.json()["next_cursor"]
            cursor = {"cursor": following} if following else {}

    pages = paged()
    rows: list[tuple[str, Callable[[], float]]] = [
        ("runs list, newest first", lambda: get("/api/v1/runs", {"limit": 50})),
        ("runs list, status=failed, next pages", lambda: next(pages)),
        (
            "runs list, saga + status",
            lambda: get("/api/v1/runs", {"status": "waiting", "saga": "saga7", "limit": 50}),
        ),
        ("a run (journal, events, previews)", lambda: get(f"/api/v1/runs/{pick(journaled)}")),
        ("search by key (q=, a prefix)", lambda: get("/api/v1/runs", {"q": key(runs)})),
        ("search by key (key=, exact)", lambda: get("/api/v1/runs", {"key": key(runs)})),
    ]  # fmt: skip
    print(f"  {'request':<40}{'median ms':>10}{'p99 ms':>10}")
    for label, call in rows:
        for _ in range(20):  # warm the caches and the reader pool
            call()
        median, high = p99([call() for _ in range(SAMPLES)])
        print(f"  {label:<40}{median:>10.2f}{high:>10.2f}")
    app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        path = os.path.join(tempfile.mkdtemp(), "api.db")
        print(f"SQLite ({path}, synchronous=FULL)")
        measure(f"sqlite:///{path}", args.runs, False)
    if args.backend in ("postgres", "both"):
        import psycopg

        schema = f"bench_api_{uuid.uuid4().hex[:8]}"
        print(f"PostgreSQL ({POSTGRES}, schema {schema})")
        try:
            measure(f"{POSTGRES}?schema={schema}", args.runs, True)
        finally:
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
