"""Rows as the store reads them back, on both backends."""

import pytest

from sagaway.store import open_store


def test_a_statement_that_must_give_a_row_names_itself_when_it_gives_none(store_url):
    store = open_store(store_url)
    try:
        sql = "SELECT id FROM sagaway_runs WHERE id = 'no-such-run'"
        with pytest.raises(RuntimeError, match=r"no row from a statement .*no-such-run"):
            store._read(lambda cur: cur.only(sql))
        assert store._read(lambda cur: cur.one(sql)) is None
    finally:
        store.close()
