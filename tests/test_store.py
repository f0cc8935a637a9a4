"""The SQLite store: migrations, durability settings, URLs, group commit."""

import sqlite3
import threading

import pytest

from sagaway import App, ConfigurationError, SchemaVersionError, StoreUnavailable
from sagaway.store import migrations, open_store
from sagaway.store.base import NewRun
from sagaway.store.sqlite import SqliteStore


def test_a_new_file_gets_the_latest_schema_and_wal(tmp_path):
    store = SqliteStore(str(tmp_path / "a.db"))
    assert store.schema_version() == migrations.latest("sqlite")
    mode = sqlite3.connect(tmp_path / "a.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert "synchronous=FULL" in store.description
    store.close()


def test_normal_durability_is_an_explicit_opt_in(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/b.db?synchronous=normal")
    assert "synchronous=NORMAL" in store.description
    store.close()
    with pytest.raises(ConfigurationError, match="FULL, NORMAL, EXTRA"):
        open_store(f"sqlite:///{tmp_path}/b.db?synchronous=OFF")
    with pytest.raises(ConfigurationError, match="unknown SQLite option"):
        open_store(f"sqlite:///{tmp_path}/b.db?journal=delete")


def test_a_database_from_a_newer_sagaway_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "new.db"
    SqliteStore(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sagaway_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError, match=r"schema version 99.*upgrade sagaway"):
        SqliteStore(str(path))


def test_an_older_schema_is_migrated_on_open(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a database as version 0 left it: only the meta table
        conn.execute("CREATE TABLE sagaway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO sagaway_meta VALUES ('schema_version', '0')")
    store = SqliteStore(str(path))
    assert store.schema_version() == migrations.latest("sqlite")
    assert store.list_runs() == []
    store.close()


def test_missing_files_and_foreign_files_get_clear_errors(tmp_path):
    with pytest.raises(StoreUnavailable, match="no sagaway database at"):
        open_store(str(tmp_path / "missing.db"), create=False)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable, match=r"cannot open .* as a sagaway SQLite database"):
        open_store(str(garbage))
    with pytest.raises(ConfigurationError, match="unsupported store URL"):
        open_store("mysql://localhost/db")


def test_app_without_url_uses_SAGAWAY_DB(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGAWAY_DB", str(tmp_path / "env.db"))
    app = App()
    assert app.url == f"sqlite:///{tmp_path}/env.db"
    app.store  # noqa: B018
    assert (tmp_path / "env.db").exists()
    app.close()


def test_concurrent_writes_share_transactions_and_each_is_durable(tmp_path):
    store = SqliteStore(str(tmp_path / "g.db"))
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
    assert writes == 320
    assert batches < writes  # several callers shared a commit
    store.close()
    reopened = SqliteStore(str(tmp_path / "g.db"))
    assert sum(reopened.count_runs().values()) == 320
    reopened.close()
