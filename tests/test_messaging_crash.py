"""Messaging under SIGKILL, with real worker processes: a message exists iff its step's
completion was recorded, and a consumer killed mid-batch loses nothing."""

import collections
import time

from sagaway import App
from tests.apps.messaging import build
from tests.conftest import wait_for
from tests.processes import WorkerProcess

TARGET = "tests.apps.messaging:app"


def lines(log, what):
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith(what)]


def test_a_worker_killed_after_a_step_published_but_before_its_checkpoint_publishes_nothing(
    store_url, tmp_path
):
    log = tmp_path / "bodies.log"
    hang = tmp_path / "bodies.log.hang-place"
    hang.touch()
    client = build(store_url, str(log))
    first = WorkerProcess(store_url, log, lease=2.0, target=TARGET)
    try:
        run = client.start("checkout", "o-1")
        wait_for(lambda: lines(log, "place"), timeout=20, what="the step's body to publish")
        first.kill()  # the body published into memory, nothing was written
        assert sum(t.messages for t in client.store.topics()) == 0
        hang.unlink()
        second = WorkerProcess(store_url, log, lease=2.0, target=TARGET)
        try:
            assert run.result(timeout=30) == "o-1"
            wait_for(lambda: lines(log, "mail"), timeout=20, what="the mail")
            time.sleep(0.5)
        finally:
            second.stop()
    finally:
        first.stop()
        client.close()
    assert lines(log, "place") == ["o-1", "o-1"]  # the step ran twice...
    topics = client_topics(store_url)
    assert topics == {"orders.placed": 1}  # ...and published once
    assert len(lines(log, "mail")) == 1


def client_topics(url):
    app = App(url)
    try:
        return {t.topic: t.messages for t in app.store.topics()}
    finally:
        app.close()


def test_a_consumer_killed_mid_batch_loses_nothing_and_rehandles_at_most_what_it_held(
    store_url, tmp_path, monkeypatch
):
    log = tmp_path / "bodies.log"
    monkeypatch.setenv("SAGAWAY_TEST_STEP_SECONDS", "0.02")
    client = build(store_url, str(log))
    ids = [client.publish("orders.placed", {"n": n}) for n in range(120)]
    first = WorkerProcess(store_url, log, lease=2.0, target=TARGET)
    try:
        wait_for(lambda: len(lines(log, "mail")) >= 30, timeout=30, what="a third handled")
        first.kill()
        second = WorkerProcess(store_url, log, lease=2.0, target=TARGET)
        try:
            wait_for(lambda: set(lines(log, "mail")) >= set(ids), timeout=60, what="every message")
        finally:
            second.stop()
    finally:
        first.stop()
        client.close()
    counts = collections.Counter(lines(log, "mail"))
    again = sum(n - 1 for n in counts.values())
    assert set(counts) == set(ids)
    assert again <= 8  # at most the messages the killed consumer held (its concurrency)
