"""Store plumbing under failures found by the fault tests, shown on SQLite in isolation."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager

from sagaway.store.sqlite import SqliteStore


def test_a_write_whose_commit_fails_after_its_batch_was_split_gets_one_outcome(tmp_path):
    # A batch is split into one transaction per write when a write fails inside it. A write
    # whose own commit then failed was reported twice (done, then failed): the group commit
    # saw more outcomes than writes, raised, and left every later writer of the process
    # waiting forever (seen with PostgreSQL connections killed at commit).
    store = SqliteStore(str(tmp_path / "s.db"))
    real = store._write_transaction
    transactions = []

    @contextmanager
    def first_lone_commit_fails():
        with real() as conn:
            yield conn
            transactions.append(conn)
            if len(transactions) == 1:  # the first write alone (the batch raised before)
                raise sqlite3.OperationalError("the connection went away at commit")

    store._write_transaction = first_lone_commit_fails
    tries = []

    def fails_in_the_shared_transaction(cur):
        tries.append(1)
        if len(tries) == 1:
            raise ValueError("a database error in the shared transaction")
        return "second"

    outcomes = store._run_batch([lambda cur: "first", fails_in_the_shared_transaction])
    try:
        assert len(outcomes) == 2
        assert outcomes[0][0] is False and "at commit" in str(outcomes[0][1])
        assert outcomes[1] == (True, "second")
    finally:
        store.close()
