"""Opening a store: read-only for looking, refusing databases that are not sagaway's, clear
one-line errors, and many processes opening a new SQLite file at the same moment."""

import hashlib
import multiprocessing
import sqlite3
import subprocess
import sys
import time

import pytest

from sagaway import App, StoreUnavailable
from sagaway.cli import main
from sagaway.store import open_store
from sagaway.store._postgres_url import parse_url
from sagaway.store.base import NewRun
from sagaway.store.sqlite import SqliteStore
from tests.conftest import POSTGRES_URL, postgres_schema

# Every verb that opens an existing store: looking (read-only) and steering.
VERBS = [
    ["runs", "list"],
    ["runs", "show", "r1"],
    ["metrics", "series", "runs_finished"],
    ["runs", "signal", "r1", "confirmed"],
    ["runs", "cancel", "r1"],
    ["runs", "redrive", "r1"],
    ["runs", "prune", "--older-than", "1d"],
]


def pg(query: str, params=()):
    """One statement on the test PostgreSQL server, outside any store; its rows."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *args) -> str:
    code, _, err = cli(capsys, *args)
    assert code == 2 and err.startswith("sagaway: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("kind", ["another application's database", "a zero-byte file"])
def test_verbs_refuse_a_sqlite_file_that_is_not_sagaways_and_leave_it_untouched(
    kind, tmp_path, capsys
):
    path = tmp_path / "other.db"
    if kind == "a zero-byte file":
        path.write_bytes(b"")
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE customers (name TEXT)")
            conn.execute("INSERT INTO customers VALUES ('Ada')")
        conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for verb in VERBS:
        err = one_line_error(capsys, *verb, "--db", str(path))
        assert f"'{path}' holds no sagaway tables" in err and "--db" in err, verb
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert [p.name for p in tmp_path.iterdir()] == ["other.db"]  # no -wal, -shm or lock file


def test_looking_does_not_wait_behind_another_process_writing(tmp_path):
    url = f"sqlite:///{tmp_path}/busy.db"
    app = App(url, record_metrics=False)

    @app.saga()
    def idle(ctx):
        return 1

    run = app.start(idle)
    app.close()
    writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write transaction
    writer.execute("UPDATE sagaway_runs SET updated_at = updated_at + 1")
    try:
        started = time.monotonic()
        for verb in (["runs", "list"], ["runs", "show", run.id], ["metrics", "series", "retries"]):
            out = subprocess.run(
                [sys.executable, "-m", "sagaway.cli", *verb, "--db", url],
                capture_output=True,
                text=True,
                timeout=20,  # the write lock's busy wait is 30 s
            )
            assert out.returncode == 0, out.stderr
        assert time.monotonic() - started < 15
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.postgres
def test_verbs_create_no_postgres_schema_nor_tables(capsys):
    with postgres_schema() as url:
        schema = parse_url(url).schema
        for verb in VERBS:
            err = one_line_error(capsys, *verb, "--db", url)
            assert f"no sagaway schema '{schema}'" in err, verb
        assert pg("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)) == []
        pg(f'CREATE SCHEMA "{schema}"')  # a schema of something else, or created by hand
        for verb in VERBS:
            err = one_line_error(capsys, *verb, "--db", url)
            assert f"schema '{schema}' at" in err and "holds no sagaway tables" in err, verb
        tables = "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        assert pg(tables, (schema,)) == []


def test_a_read_only_store_reads_and_refuses_every_write(store_url):
    writable = open_store(store_url)
    writable.create_run(NewRun("r1", "s", None, "{}", "h", time.time()))
    reader = open_store(store_url, read_only=True)
    try:
        assert [r.id for r in reader.list_runs()] == ["r1"]
        with pytest.raises(StoreUnavailable, match="opened read-only"):
            reader.create_run(NewRun("r2", "s", None, "{}", "h", time.time()))
        assert [r.id for r in writable.list_runs()] == ["r1"]
    finally:
        reader.close()
        writable.close()


def set_schema_version(url: str, value: str) -> None:
    query = "UPDATE {}sagaway_meta SET value = ? WHERE key = 'schema_version'"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(query.format(""), (value,))
        conn.close()
    else:
        pg(query.format(f'"{parse_url(url).schema}".').replace("?", "%s"), (value,))


def test_a_schema_version_that_is_not_a_number_is_a_one_line_error(store_url, capsys):
    open_store(store_url).close()
    set_schema_version(store_url, "abc")
    for read_only in (False, True):
        with pytest.raises(StoreUnavailable, match=r"schema version 'abc', which is not a number"):
            open_store(store_url, read_only=read_only)
    with pytest.raises(StoreUnavailable, match="not a number"):
        App(store_url).store  # noqa: B018
    err = one_line_error(capsys, "runs", "list", "--db", store_url)
    assert "set schema_version back" in err


def test_a_postgres_url_without_the_postgres_extra_names_what_to_install():
    missing = "import sys; sys.modules['psycopg_pool'] = None\n"  # as if it were not installed
    app = subprocess.run(
        [sys.executable, "-c", missing + "from sagaway import App\n"
         "try:\n    App('postgresql://shop@127.0.0.1:1/shop').store\n"
         "except Exception as exc:\n    print(type(exc).__name__, exc)"],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert app.stdout.startswith("StoreUnavailable postgresql:// stores need PostgreSQL support")
    assert app.stdout.count("\n") == 1 and "pip install 'sagaway[postgres]'" in app.stdout
    command = subprocess.run(
        [sys.executable, "-c", missing + "from sagaway.cli import main\n"
         "sys.exit(main(['runs', 'list', '--db', 'postgresql://shop@127.0.0.1:1/shop']))"],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert command.returncode == 2 and "Traceback" not in command.stderr
    assert command.stderr.count("\n") == 1 and "pip install 'sagaway[postgres]'" in command.stderr


def _open_at_once(path: str, barrier, outcomes) -> None:
    barrier.wait()
    try:
        SqliteStore(path).close()
        outcomes.put("opened")
    except Exception as exc:
        outcomes.put(repr(exc))


def test_eight_processes_opening_a_new_file_at_the_same_moment_all_open(tmp_path):
    # Workers started together on a new file: each must open it, none may see "database is
    # locked". Forked (not spawned) so that they reach the file within microseconds.
    context = multiprocessing.get_context("fork")
    started = time.monotonic()
    for attempt in range(15):
        path = str(tmp_path / f"new-{attempt}.db")
        barrier, outcomes = context.Barrier(8), context.Queue()
        processes = [
            context.Process(target=_open_at_once, args=(path, barrier, outcomes)) for _ in range(8)
        ]
        for process in processes:
            process.start()
        results = [outcomes.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(10)
        assert results == ["opened"] * 8, f"attempt {attempt}: {results}"
        store = SqliteStore(path)
        assert store.list_runs() == []  # migrated once, completely
        store.close()
    assert time.monotonic() - started < 30
