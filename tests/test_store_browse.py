"""The store's lists for people, on both backends: filters, key search by prefix, keyset
pages that see every run once, stuck work, and shared states."""

from __future__ import annotations

import time

import pytest

from sagaway.store import open_store
from sagaway.store._sql_browse import key_range
from sagaway.store.base import NewRun
from sagaway.store.browse import RunQuery, Stuck


@pytest.fixture
def store(store_url):
    store = open_store(store_url)
    yield store
    store.close()


def add(store, n: int, saga: str = "s", key: str | None = None, at: float | None = None):
    new = NewRun(f"run-{n:04d}", saga, key, "{}", "h", at if at is not None else 1000.0 + n)
    return store.create_run(new)[0]


def test_key_range_is_the_half_open_range_of_keys_with_the_prefix():
    assert key_range("cart-4") == ("cart-4", "cart-5")
    assert key_range("a\U0010ffff") == ("a\U0010ffff", "b")
    assert key_range("\U0010ffff") == ("\U0010ffff", None)


def test_keyset_pages_newest_first_see_every_run_once_even_with_equal_times(store):
    for n in range(23):
        add(store, n, at=1000.0 + n // 4)  # four runs share each creation time
    seen, after = [], None
    while True:
        page = store.find_runs(RunQuery(), 5, after)
        if not page:
            break
        seen += [r.id for r in page]
        after = (page[-1].created_at, page[-1].id)
    assert seen == sorted(seen, key=lambda i: (1000 + int(i[4:]) // 4, i), reverse=True)
    assert len(set(seen)) == 23


def test_a_key_search_finds_keys_by_prefix_in_key_order_and_pages(store):
    keys = ["cart-4", "cart-40", "cart-41", "cart-5", "cart-4\u00e9", "CART-4", "cart-"]
    for n, key in enumerate(keys):
        add(store, n, key=key)
    add(store, 99)  # no key
    query = RunQuery(search="cart-4")
    found = [r.key for r in store.find_runs(query, 100)]
    assert found == ["cart-4", "cart-40", "cart-41", "cart-4\u00e9"]
    first = store.find_runs(query, 2)
    rest = store.find_runs(query, 100, (first[-1].key, first[-1].id))
    assert [r.key for r in first + rest] == found
    assert [r.key for r in store.find_runs(RunQuery(key="cart-4"), 10)] == ["cart-4"]


def test_filters_combine_status_saga_and_creation_time(store):
    for n in range(6):
        add(store, n, saga="a" if n % 2 else "b")
    store.request_cancel("run-0001", 2000.0)
    query = RunQuery(statuses=("pending",), saga="a", created_after=1002.0, created_before=1006.0)
    assert [r.id for r in store.find_runs(query, 10)] == ["run-0005", "run-0003"]
    assert store.count_matching(RunQuery(saga="b"), 100) == 3
    assert store.count_matching(RunQuery(), 4) == 4  # counts no further than the cap


def test_stuck_runs_by_kind(store):
    now = time.time()
    add(store, 1, at=now - 600)  # pending, due ten minutes ago, nobody took it
    add(store, 2, at=now)  # pending, due just now: not overdue yet
    assert [r.id for r in store.stuck_runs(Stuck.OVERDUE, now, 60, 10)] == ["run-0001"]
    assert store.stuck_runs(Stuck.UNOWNED, now, 60, 10) == []
    claimed = store.claim("worker-1", 10, now, now - 1)  # a lease that has already ended
    assert {c.run.id for c in claimed} == {"run-0001", "run-0002"}
    unowned = store.stuck_runs(Stuck.UNOWNED, now, 60, 10)
    assert {r.id for r in unowned} == {"run-0001", "run-0002"}
    assert store.stuck_runs(Stuck.FAILED, now, 60, 10) == []
    assert store.stuck_runs(Stuck.PARKED, now, 60, 10) == []


def test_shared_breakers_and_buckets_are_listed(store):
    store.publish_breaker("payments", "open", 1234.5, 0)
    store.update_bucket("mail", lambda level: ((3.0, 99.0), None))
    [breaker] = store.shared_breakers()
    assert (breaker.name, breaker.state, breaker.until) == ("payments", "open", 1234.5)
    [bucket] = store.shared_buckets()
    assert (bucket.name, bucket.tokens, bucket.stamp) == ("mail", 3.0, 99.0)


@pytest.mark.parametrize(
    "query",
    [
        RunQuery(),
        RunQuery(statuses=("failed",)),
        RunQuery(saga="checkout"),
        RunQuery(search="cart-4"),
        RunQuery(key="cart-42"),
    ],
    ids=["newest", "status", "saga", "search", "key"],
)
def test_each_list_is_an_index_range_without_a_sort_on_sqlite(tmp_path, query):
    """What keeps a page cheap at a million runs: SQLite walks an index in the list's order
    and stops after the page (no full scan, no sort of every match)."""
    from sagaway.store._sql_browse import BrowseStatements

    store = open_store(f"sqlite:///{tmp_path}/plan.db")
    try:
        captured = []
        original = BrowseStatements._read

        def spy(self, work):
            class Recorder:
                def all(self, sql, params=()):
                    captured.append((sql, params))
                    return []

            work(Recorder())
            return original(self, work)

        BrowseStatements._read = spy
        try:
            store.find_runs(query, 50, None)
            store.find_runs(query, 50, ("cart-40" if query.by_key else 1000.0, "run-1"))
        finally:
            BrowseStatements._read = original
        with store._read_connection() as conn:
            for sql, params in captured:
                plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
                assert "INDEX" in plan, plan
                if query.key is None:  # an exact key matches a run per saga at most: sorted
                    assert "TEMP B-TREE" not in plan, plan
    finally:
        store.close()
