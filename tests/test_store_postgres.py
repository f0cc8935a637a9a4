"""The PostgreSQL store: URL options, schemas and migrations, the connection budget,
LISTEN/NOTIFY wake-ups, lost connections, row locks. Engine behaviour on PostgreSQL is
covered by the engine tests, which run on both backends."""

import threading
import time
import uuid

import psycopg
import pytest

from sagaway import (
    App,
    ConfigurationError,
    ConnectionBudgetExhausted,
    LeaseLost,
    SchemaVersionError,
    StoreUnavailable,
)
from sagaway.store import migrations, open_store
from sagaway.store.base import Checkpoint, JournalEntry, NewRun
from sagaway.store.postgres import PostgresStore, parse_url
from tests.conftest import FAST, POSTGRES_URL, postgres_schema, wait_for


def sql(query, params=()):
    """Run one statement on the test server, outside any store; return its rows."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def tagged(url):
    """The URL with an application_name of its own, to find its connections on the server."""
    name = f"sagaway-test-{uuid.uuid4().hex[:8]}"
    return f"{url}&application_name={name}", name


def connections(name):
    return sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))[0][0]


def terminate(name):
    return sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
        (name,),
    )[0][0]


# --- URLs ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("schema=Shop", r"schema='Shop'.*lowercase letters"),
        ("schema=pg_shop", "not starting with a digit or pg_"),
        ("pool_size=0", "pool_size='0'.*integer >= 1"),
        ("pool_timeout=-1", "pool_timeout='-1'.*a number > 0"),
        ("listen=maybe", "listen='maybe'.*use on or off"),
        ("pool_sise=4", "sagaway's options are schema, pool_size, pool_timeout, listen"),
    ],
)
def test_bad_url_options_name_the_option_and_what_it_accepts(query, message):
    with pytest.raises(ConfigurationError, match=message):
        parse_url(f"postgresql://shop:secret@db.example/shop?{query}")


def test_messages_never_show_the_password():
    with pytest.raises(ConfigurationError) as caught:
        parse_url("postgresql://shop:secret@db.example/shop?pool_size=x")
    assert "secret" not in str(caught.value) and "shop:***@db.example" in str(caught.value)


def test_libpq_parameters_pass_through_and_session_options_merge():
    settings = parse_url(
        "postgresql://shop@db.example:6432/orders?sslmode=require&schema=checkout"
        "&application_name=shop-worker&options=-c%20statement_timeout%3D5000&pool_size=3"
    )
    params = psycopg.conninfo.conninfo_to_dict(settings.conninfo)
    assert params["sslmode"] == "require"
    assert params["application_name"] == "shop-worker"  # the URL's own wins
    assert params["options"].startswith("-c search_path=checkout ")
    assert params["options"].endswith("-c statement_timeout=5000")  # later, so it wins
    assert "schema" not in params and "pool_size" not in params
    assert settings.where == "db.example:6432/orders"
    assert (settings.pool_size, settings.budget, settings.channel) == (
        3,
        4,
        "sagaway_wake_checkout",
    )
    assert parse_url("postgresql://h/d?listen=off").budget == 4  # the default pool alone


def test_postgres_migrations_keep_step_with_sqlite():
    versions = [v for v, _ in migrations.migrations("postgres")]
    assert versions == [v for v, _ in migrations.migrations("sqlite")]


def test_an_unreachable_server_is_a_clear_error_at_once():
    started = time.monotonic()
    with pytest.raises(
        StoreUnavailable, match=r"cannot connect to PostgreSQL at 127.0.0.1:1/x"
    ) as e:
        PostgresStore("postgresql://postgres@127.0.0.1:1/x?connect_timeout=2")
    assert time.monotonic() - started < 5
    assert "\n" not in str(e.value) and "\t" not in str(e.value)  # one line for the terminal


# --- schemas -------------------------------------------------------------------------------
def test_a_new_schema_is_created_with_the_latest_version():
    with postgres_schema() as url:
        store = open_store(url)
        try:
            schema = store.settings.schema
            tables = {
                row[0]
                for row in sql(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (schema,),
                )
            }
            assert tables == {
                "sagaway_breakers",
                "sagaway_limiters",
                "sagaway_metrics",
                "sagaway_meta",
                "sagaway_runs",
                "sagaway_journal",
                "sagaway_signals",
                "sagaway_events",
                "sagaway_messages",
                "sagaway_groups",
                "sagaway_deliveries",
                "sagaway_tokens",
                "sagaway_sessions",
                "sagaway_audit",
                "sagaway_forks",
            }
            assert store.schema_version() == migrations.latest("postgres")
            assert f"schema {schema}" in store.description
            assert "pool of 4 + 1 for LISTEN" in store.description
        finally:
            store.close()


def test_a_missing_schema_is_not_created_when_asked_not_to():
    with postgres_schema() as url:
        with pytest.raises(StoreUnavailable, match=r"no sagaway schema 'test_\w+' at .*schema="):
            open_store(url, create=False)
        open_store(url).close()
        open_store(url, create=False).close()


def test_stores_in_two_schemas_of_one_database_do_not_see_each_other():
    with postgres_schema() as first_url, postgres_schema() as second_url:
        first, second = open_store(first_url), open_store(second_url)
        try:
            first.create_run(NewRun("r1", "s", None, "{}", "h", time.time()))
            assert [r.id for r in first.list_runs()] == ["r1"]
            assert second.list_runs() == [] and second.next_due() is None
        finally:
            first.close()
            second.close()


def test_a_schema_from_a_newer_sagaway_is_refused_and_an_older_one_migrated():
    with postgres_schema() as url:
        open_store(url).close()
        schema = parse_url(url).schema
        sql(f"UPDATE {schema}.sagaway_meta SET value = '99' WHERE key = 'schema_version'")
        with pytest.raises(SchemaVersionError, match=r"schema version 99.*upgrade sagaway"):
            open_store(url)
    with postgres_schema() as url:
        schema = parse_url(url).schema
        sql(f"CREATE SCHEMA {schema}")
        sql(f"CREATE TABLE {schema}.sagaway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        sql(f"INSERT INTO {schema}.sagaway_meta VALUES ('schema_version', '0')")
        store = open_store(url)
        try:
            assert store.schema_version() == migrations.latest("postgres")
            assert store.list_runs() == []
        finally:
            store.close()


def test_processes_opening_a_new_schema_together_migrate_it_once():
    with postgres_schema() as url:
        stores, errors = [], []

        def open_one():
            try:
                stores.append(open_store(url))
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for store in stores:
            store.close()
        assert errors == [] and len(stores) == 6


# --- the connection budget -----------------------------------------------------------------
def test_a_full_pool_waits_for_its_timeout_then_names_the_budget():
    with postgres_schema(pool_size=1, pool_timeout=0.3) as url:
        store = open_store(url)
        try:
            outcome = []
            with store._read_connection():  # the only connection, held by someone else

                def read():
                    started = time.monotonic()
                    try:
                        store.get_run("r1")
                    except ConnectionBudgetExhausted as exc:
                        outcome.append((time.monotonic() - started, str(exc)))

                reader = threading.Thread(target=read)
                reader.start()
                reader.join(10)
            waited, message = outcome[0]
            assert 0.25 <= waited < 3
            assert "pool_size=1" in message and "raise pool_size" in message
            assert "pool_size + 1 connections" in message
            assert store.get_run("r1") is None  # and once a connection is free, it works
        finally:
            store.close()


def test_a_busy_worker_stays_within_its_connection_budget():
    with postgres_schema(pool_size=2) as base:
        url, name = tagged(base)
        app = App(url, concurrency=16, retry=FAST)

        @app.step
        def step(n):
            return n

        @app.saga()
        def saga_(ctx, n):
            step(n)
            ctx.wait("go", timeout=30)
            step(n)
            return n

        seen, done = [], threading.Event()

        def watch():
            while not done.is_set():
                seen.append(connections(name))
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with app:
                runs = [app.start(saga_, i) for i in range(150)]
                for run in runs:
                    app.signal(run.id, "go")
                assert [run.result(timeout=30) for run in runs] == list(range(150))
        finally:
            done.set()
            watcher.join()
            app.close()
        assert 0 < max(seen) <= 3, max(seen)  # pool_size 2, plus the LISTEN connection


# --- wake-ups ------------------------------------------------------------------------------
def test_workers_wake_on_notifications_not_on_their_poll():
    """The worker polls only every 5 s here: each of these finishes far sooner only because
    the write that made the run due sent a notification."""
    with postgres_schema() as url:
        worker = App(url, poll_interval=5.0, retry=FAST)
        client = App(url)  # another store instance, as another process would have
        resumed: list[float] = []

        def waits(ctx):
            ctx.wait("go", timeout=60)
            return "done"

        def sleeps(ctx, seconds):
            ctx.sleep(seconds)
            resumed.append(time.time())
            return "slept"

        for app in (worker, client):
            app.saga(waits)
            app.saga(sleeps)

        try:
            with worker:
                time.sleep(0.2)  # let the scheduler settle into its 5 s poll
                started = time.monotonic()
                run = client.start("waits")
                wait_for(lambda: run.status == "waiting", 3, what="the new run to be picked up")
                picked_up = time.monotonic() - started
                started = time.monotonic()
                client.signal(run.id, "go")
                assert run.result(timeout=3) == "done"
                signalled = time.monotonic() - started
                timer = client.start("sleeps", 1.5)
                assert timer.result(timeout=5) == "slept"
                wake_at = float(next(s.result for s in timer.steps if s.kind == "sleep"))
                late = resumed[0] - wake_at
                cancelled = client.start("waits")
                wait_for(lambda: cancelled.status == "waiting", 3, what="the run to wait")
                started = time.monotonic()
                client.cancel(cancelled.id)
                wait_for(lambda: cancelled.status == "cancelled", 3, what="the cancel")
                cancelling = time.monotonic() - started
        finally:
            worker.close()
            client.close()
        assert picked_up < 1.5 and signalled < 1.5 and cancelling < 1.5
        assert 0 <= late < 1.0, late  # the benchmark measures it finely (target: 100 ms)


def test_lost_connections_are_replaced_and_runs_go_on(tmp_path):
    with postgres_schema() as base:
        url, name = tagged(base)
        app = App(url, concurrency=8, lease=3.0, poll_interval=5.0, retry=FAST)

        @app.step
        def step(n):
            time.sleep(0.01)
            return n

        @app.saga()
        def saga_(ctx, n):
            for _ in range(4):
                step(n)
            return n

        killed, done = [], threading.Event()

        def killer():
            while not done.wait(0.1):
                killed.append(terminate(name))

        try:
            with app:
                wait_for(lambda: connections(name) >= 2, what="the pool and the listener")
                # Started first: a start whose commit is cut off is an error the caller sees
                # (it may or may not have been applied); what is tested is execution.
                runs = [app.start(saga_, i) for i in range(200)]
                thread = threading.Thread(target=killer)
                thread.start()
                try:
                    results = [run.result(timeout=60) for run in runs]
                finally:
                    done.set()
                    thread.join()
                assert results == list(range(200))
                assert {run.status for run in runs} == {"succeeded"}
                assert sum(killed) > 10 and len(killed) > 5  # connections were cut, many times
                # The LISTEN connection came back: a run started elsewhere still wakes it.
                listener = app.store._listener
                wait_for(listener.connected.is_set, what="the listener to reconnect")
                other = App(url)

                @other.saga(name="saga_")
                def remote(ctx, n):
                    return n

                started = time.monotonic()
                assert other.start(remote, 7).result(timeout=4) == 7
                assert time.monotonic() - started < 2
                other.close()
        finally:
            app.close()


# --- row locks -----------------------------------------------------------------------------
def test_a_checkpoint_in_flight_keeps_claims_off_its_run():
    with postgres_schema() as url:
        store = open_store(url)
        try:
            now = time.time()
            for run_id in ("busy", "free"):
                store.create_run(NewRun(run_id, "s", None, "{}", "h", now))
            schema = store.settings.schema
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                with conn.transaction():  # a checkpoint's fence read, not yet committed
                    conn.execute(
                        f"SELECT epoch FROM {schema}.sagaway_runs WHERE id = 'busy' FOR SHARE"
                    )
                    claimed = store.claim("w1", 10, now + 1, now + 30)
                    assert [c.run.id for c in claimed] == ["free"]  # skipped, not waited for
            claimed = store.claim("w1", 10, now + 1, now + 30)
            assert [c.run.id for c in claimed] == ["busy"]
        finally:
            store.close()


def test_concurrent_writes_share_transactions():
    with postgres_schema() as url:
        store = open_store(url)
        barrier = threading.Barrier(16)

        def writer(n):
            barrier.wait()
            for i in range(20):
                store.create_run(NewRun(f"r{n}-{i}", "s", None, "{}", "h", 0.0))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches, writes = store.commit_stats
        store.close()
        assert writes == 320 and batches < writes
        reopened = open_store(url)
        assert sum(reopened.count_runs().values()) == 320
        reopened.close()


def test_a_batch_keeps_every_write_but_the_one_that_fails():
    """Writes batched into one transaction (pipelined statements) fail one by one: a stale
    checkpoint is refused and writes nothing, a duplicate run is an error, the rest commit."""
    with postgres_schema() as url:
        store = open_store(url)
        try:
            now = time.time()
            store.create_run(NewRun("taken", "s", None, "{}", "h", now))
            store.create_run(NewRun("dup", "s", None, "{}", "h", now + 1000))  # never due here
            stale = store.claim("a:1:0:x", 1, now + 1, now - 1)[0].run.epoch
            store.claim("b:2:0:y", 1, now + 1, now + 30)  # takes "taken" over: epoch + 1
            owned = []
            for i in range(12):
                run, _ = store.create_run(NewRun(f"r{i}", "s", None, "{}", "h", now), "w", now + 30)
                owned.append(run)
            entry = JournalEntry(0, 0, "step", "x", "ok", None, "1", None, 1, now, now)
            outcomes = {}
            barrier = threading.Barrier(14)

            def write(name, call):
                barrier.wait()
                try:
                    outcomes[name] = call()
                except Exception as exc:
                    outcomes[name] = exc

            calls = [
                (r.id, lambda r=r: store.checkpoint(Checkpoint(r.id, r.epoch, now, None, [entry])))
                for r in owned
            ]
            calls.append(
                ("stale", lambda: store.checkpoint(Checkpoint("taken", stale, now, None, [entry])))
            )
            calls.append(("dup", lambda: store.create_run(NewRun("dup", "s", None, "{}", "h", 0))))
            before = store.commit_stats
            threads = [threading.Thread(target=write, args=call) for call in calls]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            batches = store.commit_stats[0] - before[0]
            assert batches < len(calls)  # they did share transactions
            assert all(outcomes[r.id] is False for r in owned)  # committed; no cancel asked
            assert all(len(store.journal(r.id)) == 1 for r in owned)
            assert isinstance(outcomes["stale"], LeaseLost) and store.journal("taken") == []
            assert isinstance(outcomes["dup"], psycopg.errors.UniqueViolation)
        finally:
            store.close()
