"""The API's reads at scale: with --runs runs in the store (1,000,000 by default), the runs
list (filtered by status and saga, paged), a run's page and search by key, timed server-side
(the ASGI application called in process, no network), on SQLite and PostgreSQL.

Runs are written with bulk SQL (a recursive CTE on SQLite, generate_series on PostgreSQL):
10 sagas, keys "order-<n>", statuses mostly succeeded with some failed and waiting, five
journal entries each for the runs a run page opens.

    python bench/api.py                         # 1,000,000 runs, both backends
    python bench/api.py --runs 100000 --backend sqlite
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid

from fastapi.testclient import TestClient

from sagaway import App
from sagaway.api import create_app
from sagaway.api.access import issue_token
from sagaway.store import open_store

POSTGRES = os.environ.get("SAGAWAY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
# status by n % 100: 90 succeeded, 5 failed, 3 waiting, 2 compensated
STATUS_SQL = (
    "CASE WHEN n % 100 < 90 THEN 'succeeded' WHEN n % 100 < 95 THEN 'failed' "
    "WHEN n % 100 < 98 THEN 'waiting' ELSE 'compensated' END"
)
RUN_INSERT = (
    "INSERT INTO sagaway_runs (id, saga, idem_key, input, input_hash, status, created_at, "
    "updated_at) SELECT {id}, 'saga' || (n % 10), 'order-' || n, '{{}}', 'h', "
    f"{STATUS_SQL}, {{t0}} + n * 0.01, {{t0}} + n * 0.01 FROM {{series}}"
)


def fill(store, runs: int, postgres: bool) -> None:
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
    with store._write_transaction() as conn:
        sql = RUN_INSERT.format(id=run_id, t0=t0, series=series)
        conn.execute(sql if not postgres else sql.replace("%", "%%"))
        for position in range(5):
            conn.execute(
                "INSERT INTO sagaway_journal (run_id, position, phase, kind, name, status, "
                "result, attempts, started_at, finished_at) "
                f"SELECT id, {position}, 0, 'step', 's{position}', 'ok', '1', 1, created_at, "
                "created_at FROM sagaway_runs WHERE idem_key IN "
                + "("
                + ",".join(f"'order-{n}'" for n in range(0, runs, max(1, runs // 500)))
                + ")"
            )
        conn.execute("ANALYZE")


def timed(client, headers, path, params=None, n=300) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = (
            client.get(path, params=params(), headers=headers)
            if params
            else client.get(path, headers=headers)
        )
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def measure(url: str, runs: int, postgres: bool) -> None:
    store = open_store(url)
    started = time.perf_counter()
    fill(store, runs, postgres)
    print(f"  filled {runs:,} runs in {time.perf_counter() - started:.1f} s")
    app = App(store=store, record_metrics=False)
    token = issue_token(store, "viewer", "bench", "bench")[1]
    client = TestClient(create_app(app))
    headers = {"Authorization": f"Bearer {token}"}
    cursor = {}

    def page_params():
        nonlocal cursor
        params = {"status": "failed", "saga": "saga3", "limit": 50, **cursor}
        body = client.get("/api/v1/runs", params=params, headers=headers).json()
        cursor = {"cursor": body["next_cursor"]} if body["next_cursor"] else {}
        return {"status": "failed", "limit": 50, **cursor}

    journaled = [f"{n:012x}" for n in range(0, runs, max(1, runs // 500))]
    rows = [
        ("runs list, newest first", "/api/v1/runs", lambda: {"limit": 50}),
        ("runs list, status=failed, paged", "/api/v1/runs", page_params),
        (
            "runs list, saga + status",
            "/api/v1/runs",
            lambda: {"status": "waiting", "saga": "saga7", "limit": 50},
        ),
        (
            "search by key (prefix)",
            "/api/v1/runs",
            lambda: {"q": f"order-{random.randrange(runs)}"},
        ),
        (
            "search by key (exact)",
            "/api/v1/runs",
            lambda: {"key": f"order-{random.randrange(runs)}"},
        ),
    ]
    print(f"  {'request':<36}{'median ms':>10}{'p99 ms':>10}")
    for label, path, params in rows:
        median, p99 = timed(client, headers, path, params)
        print(f"  {label:<36}{median:>10.2f}{p99:>10.2f}")
    samples = []
    for _ in range(300):
        run_id = random.choice(journaled)
        start = time.perf_counter()
        assert client.get(f"/api/v1/runs/{run_id}", headers=headers).status_code == 200
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    label = "a run (journal, events, previews)"
    print(f"  {label:<36}{statistics.median(samples):>10.2f}{samples[296]:>10.2f}")
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
