"""Durable messaging: the outbox (published iff recorded), consumer groups, the inbox,
FIFO per key, dead letters, publishing in the caller's transaction."""

import random
import sqlite3
import threading
import time

import pytest

from sagaway import App, ConfigurationError, Permanent, Retry, SerializationError, current_step
from sagaway.messaging import Message
from tests.conftest import wait_for

FAST = Retry(attempts=3, base=0.001, cap=0.005)


def handled_by(app, topic, group, **options):
    """Declare a consumer that records what it handled; return that list."""
    seen: list[Message] = []
    lock = threading.Lock()

    @app.consumer(topic, group=group, retry=options.pop("retry", FAST), **options)
    def handle(message: Message) -> None:
        with lock:
            seen.append(message)

    return seen


def stored_messages(app, topic=None):
    return [t for t in app.store.topics() if topic is None or t.topic == topic]


def count_messages(app, topic):
    stats = stored_messages(app, topic)
    return stats[0].messages if stats else 0


# --- the outbox ------------------------------------------------------------
def test_a_step_publishes_iff_its_completion_is_recorded(make_app):
    app = make_app()
    tries = []

    @app.step(retry=Retry(attempts=3, base=0.001, cap=0.001))
    def place(order):
        tries.append(order)
        current_step().publish("orders.placed", {"order": order}, key=order)
        if order == "flaky" and len(tries) == 1:
            raise ConnectionError("lost the answer")  # the first try's message is dropped
        if order == "bad":
            raise Permanent("refused")
        return order

    @app.saga()
    def checkout(ctx, order):
        return place(order)

    seen = handled_by(app, "orders.placed", "mailer")
    with app:
        assert app.start(checkout, "flaky").result(timeout=20) == "flaky"
        with pytest.raises(Exception, match="refused"):
            app.start(checkout, "bad").result(timeout=20)
        wait_for(lambda: len(seen) == 1, what="the one recorded message to be handled")
        time.sleep(0.3)  # nothing else arrives
    assert [m.payload for m in seen] == [{"order": "flaky"}]
    assert count_messages(app, "orders.placed") == 1


def test_ctx_publish_is_journaled_and_not_repeated_on_replay(make_app):
    app = make_app()

    @app.saga()
    def notify(ctx, order):
        first = ctx.publish("orders.noted", {"order": order})
        ctx.wait("go")
        return first

    seen = handled_by(app, "orders.noted", "audit")
    with app:
        run = app.start(notify, "o-1")
        wait_for(lambda: run.status == "waiting", what="the run to wait")
        app.signal(run.id, "go")
        message_id = run.result(timeout=20)  # the replay after the signal publishes nothing
        wait_for(lambda: len(seen) == 1, what="the message")
    assert seen[0].id == message_id
    assert [s.kind for s in run.steps] == ["publish", "wait"]
    assert count_messages(app, "orders.noted") == 1


def test_a_payload_that_is_not_json_fails_at_publish_and_a_caught_error_leaves_the_step_whole(
    make_app,
):
    app = make_app()

    @app.step
    def place(order):
        try:
            current_step().publish("orders.placed", {"when": object()})
        except SerializationError as exc:
            assert "orders.placed" in str(exc)
        current_step().publish("orders.placed", {"order": order})
        return "ok"

    @app.saga()
    def checkout(ctx, order):
        return place(order)

    with app:
        assert app.start(checkout, "o").result(timeout=20) == "ok"
    assert count_messages(app, "orders.placed") == 1
    with pytest.raises(SerializationError, match="cannot be stored as JSON"):
        app.publish("orders.placed", {1, 2})
    with pytest.raises(ConfigurationError, match="delay"):
        app.publish("orders.placed", {}, delay=-1)
    with pytest.raises(ConfigurationError, match="topic"):
        app.publish(" ", {})
    assert count_messages(app, "orders.placed") == 1  # refused calls stored nothing


def test_dedup_id_keeps_one_message_per_topic(make_app):
    app = make_app()
    first = app.publish("mail.requested", {"n": 1}, dedup_id="order-7-mail")
    app.publish("mail.requested", {"n": 2}, dedup_id="order-7-mail")
    app.publish("other.topic", {"n": 3}, dedup_id="order-7-mail")  # per topic
    assert count_messages(app, "mail.requested") == 1
    assert count_messages(app, "other.topic") == 1
    seen = handled_by(app, "mail.requested", "mailer")
    with app:
        wait_for(lambda: seen, what="the message")
    assert seen[0].id == first and seen[0].payload == {"n": 1}


# --- groups and the inbox ------------------------------------------------------------
def test_every_group_gets_every_message_once_those_published_before_it_included(make_app):
    app = make_app()
    for n in range(10):
        app.publish("stock.changed", {"n": n}, key=f"sku-{n % 3}")
    mailer = handled_by(app, "stock.changed", "mailer", concurrency=4)
    search = handled_by(app, "stock.changed", "search", concurrency=2)
    with app:
        for n in range(10, 20):
            app.publish("stock.changed", {"n": n})
        wait_for(lambda: len(mailer) == 20 and len(search) == 20, what="both groups")
        time.sleep(0.3)
    for seen in (mailer, search):
        assert sorted(m.payload["n"] for m in seen) == list(range(20))
        assert all(m.attempt == 1 for m in seen)
    assert mailer[0].idempotency_key == f"mailer/{mailer[0].id}"
    groups = {g.group: g for g in app.store.groups()}
    assert groups["mailer"].handled == 20 and groups["mailer"].ready == 0


def test_a_message_handled_by_a_group_is_not_handed_to_it_again_after_a_lease_loss(make_app):
    # A consumer stalls past its lease; another takes the message over and handles it; the
    # stalled one's late outcome is refused by the fence, and nobody handles it a third time.
    app = make_app(lease=0.6)
    calls = []
    release = threading.Event()

    @app.consumer("slow.topic", group="g", retry=FAST, concurrency=2)
    def handle(message):
        calls.append(message.attempt)
        if message.attempt == 1:
            release.wait(5)  # outlives the lease (the heartbeat keeps it... unless stopped)

    app.publish("slow.topic", {"x": 1})
    with app:
        worker = app._messaging._workers[("g", "slow.topic")]
        wait_for(lambda: calls, what="the first try")
        worker._inflight.clear()  # the heartbeat no longer renews it: as if partitioned
        wait_for(lambda: len(calls) == 2, timeout=10, what="the takeover")
        release.set()
        time.sleep(0.5)
        stats = {g.group: g for g in app.store.groups()}["g"]
        assert stats.handled == 1
    assert calls == [1, 2]


# --- FIFO per key --------------------------------------------------------------------------------
def test_ordered_consumers_handle_each_key_in_publish_order_under_concurrency(make_app):
    app = make_app()
    rng = random.Random(5)
    seen = []
    in_flight: dict[str, int] = {}
    lock = threading.Lock()
    overlap = []

    @app.consumer("orders", group="fifo", concurrency=6, ordered=True, retry=FAST)
    def handle(message):
        with lock:
            in_flight[message.key] = in_flight.get(message.key, 0) + 1
            if in_flight[message.key] > 1:
                overlap.append(message.key)
        time.sleep(rng.random() * 0.01)
        with lock:
            in_flight[message.key] -= 1
            seen.append((message.key, message.payload["n"]))

    for n in range(60):
        app.publish("orders", {"n": n}, key=f"k{n % 4}")
    with app:
        wait_for(lambda: len(seen) == 60, timeout=30, what="every message")
    assert overlap == []
    for key in ("k0", "k1", "k2", "k3"):
        mine = [n for k, n in seen if k == key]
        assert mine == sorted(mine)


def test_a_message_waiting_for_a_retry_holds_back_its_key_but_a_dead_one_does_not(make_app):
    app = make_app()
    seen = []

    @app.consumer("orders", group="fifo", ordered=True, retry=Retry(attempts=2, base=0.3, cap=0.3))
    def handle(message):
        if message.payload["n"] == 0:
            raise ValueError("cannot ship order 0")
        seen.append(message.payload["n"])

    for n in range(3):
        app.publish("orders", {"n": n}, key="same")
    with app:
        wait_for(lambda: len(seen) == 2, timeout=20, what="the later messages")
    assert seen == [1, 2]  # after message 0 went dead, not before its retry
    dead = app.dead_letters(group="fifo")
    assert [d.message.payload for d in dead] == [{"n": 0}]


# --- dead letters ------------------------------------------------------------
def test_dead_letters_after_the_retries_are_spent_then_redriven(make_app):
    app = make_app()
    broken = {"on": True}
    handled = []

    @app.consumer("mail", group="mailer", retry=Retry(attempts=3, base=0.001, cap=0.001))
    def send(message):
        if broken["on"]:
            raise ConnectionError(f"relay refused message {message.payload['n']}")
        handled.append(message.payload["n"])

    for n in range(4):
        app.publish("mail", {"n": n})
    with app:
        wait_for(lambda: len(app.dead_letters("mailer")) == 4, timeout=20, what="4 dead")
        dead = app.dead_letters("mailer")
        assert {d.attempts for d in dead} == {3}
        assert {d.fingerprint for d in dead} == {"ConnectionError: relay refused message #"}
        assert dead[0].error.type == "builtins.ConnectionError"
        broken["on"] = False
        assert app.redrive_dead_letters("mailer", ids=[dead[0].id]) == 1
        wait_for(lambda: handled == [dead[0].message.payload["n"]], what="the redriven one")
        assert app.redrive_dead_letters("mailer") == 3
        wait_for(lambda: len(handled) == 4, what="the rest")
    assert app.dead_letters("mailer") == []
    with pytest.raises(ConfigurationError, match="known: mailer"):
        app.dead_letters("nobody")


# --- publishing in the caller's transaction ------------------------------------------------------
def test_publish_with_a_sqlite_connection_commits_and_rolls_back_with_the_caller(tmp_path):
    from sagaway import App

    path = tmp_path / "shop.db"
    app = App(f"sqlite:///{path}")
    try:
        app.store  # noqa: B018 - create the file
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE stock (sku TEXT, n INTEGER)")
        conn.commit()
        conn.execute("INSERT INTO stock VALUES ('mug', 3)")
        app.publish("stock.changed", {"sku": "mug"}, conn=conn)
        conn.rollback()
        assert count_messages(app, "stock.changed") == 0
        conn.execute("INSERT INTO stock VALUES ('mug', 3)")
        app.publish("stock.changed", {"sku": "mug"}, conn=conn)
        conn.commit()
        assert count_messages(app, "stock.changed") == 1
        other = sqlite3.connect(tmp_path / "other.db")
        with pytest.raises(ConfigurationError, match="not to this App's store"):
            app.publish("stock.changed", {}, conn=other)
        conn.close()
        other.close()
    finally:
        app.close()


@pytest.mark.postgres
def test_publish_with_a_psycopg_connection_commits_with_the_caller_and_skips_nothing():
    """Out-of-order commits: a message whose transaction commits after a later one's is
    still delivered (no cursor moved past it)."""
    import psycopg

    from sagaway import App
    from tests.conftest import POSTGRES_URL, postgres_schema

    with postgres_schema() as url:
        app = App(url, lease=3.0)
        try:
            _out_of_order_commits(app, psycopg, POSTGRES_URL)
        finally:
            app.close()


def _out_of_order_commits(app, psycopg, server):
    seen = handled_by(app, "stock.changed", "stock")
    with app:
        early = psycopg.connect(server)
        late = psycopg.connect(server)
        try:
            app.publish("stock.changed", {"n": 1}, key="mug", conn=early)  # not committed
            app.publish("stock.changed", {"n": 2}, key="mug", conn=late)
            late.commit()
            wait_for(lambda: len(seen) == 1, what="the committed message")
            early.commit()
            wait_for(lambda: len(seen) == 2, what="the message committed later")
            rolled = psycopg.connect(server)
            app.publish("stock.changed", {"n": 3}, conn=rolled)
            rolled.rollback()
            rolled.close()
            time.sleep(0.3)
        finally:
            early.close()
            late.close()
    assert sorted(m.payload["n"] for m in seen) == [1, 2]


# --- subscribe ------------------------------------------------------------
def test_subscribe_starts_one_saga_per_message_keyed_by_the_message_id(make_app):
    app = make_app()
    done = []

    @app.step
    def fulfil_order(order):
        done.append(order)
        return order

    @app.saga()
    def fulfil(ctx, payload):
        return fulfil_order(payload["order"])

    app.subscribe("orders.placed", fulfil, group="fulfilment")
    ids = [app.publish("orders.placed", {"order": f"o{n}"}) for n in range(3)]
    with app:
        wait_for(lambda: len(done) == 3, timeout=20, what="three runs")
        runs = app.runs(saga="fulfil")
    assert sorted(r.key for r in runs) == sorted(ids)
    assert sorted(done) == ["o0", "o1", "o2"]


# --- observability ---------------------------------------------------------------------------
def test_groups_are_measured_and_their_metrics_are_alarm_sources_and_prometheus_metrics(make_app):
    from prometheus_client import CollectorRegistry, generate_latest

    from sagaway.observe import EngineMetricRef
    from sagaway.observe.metrics import StoreCollector

    app = make_app()
    calls = []

    @app.consumer("mail", group="mailer", retry=Retry(attempts=2, base=0.001, cap=0.001))
    def send(message):
        calls.append(message.payload["n"])
        if message.payload["n"] == 0:
            raise ConnectionError("relay down")

    for n in range(3):
        app.publish("mail", {"n": n})
    app.publish("mail", {"n": 9}, delay=3600)  # waits: the group's depth and lag see it
    with app:
        wait_for(lambda: len(app.dead_letters("mailer")) == 1, what="the dead letter")
        wait_for(lambda: len(calls) == 4, what="every try")
        app.recorder.flush()
    rows = {name: 0 for name in ("messages_handled", "messages_retried", "messages_dead")}
    for name in rows:
        rows[name] = sum(row[3] for row in app.store.metric_rows(name))
    assert rows == {"messages_handled": 4, "messages_retried": 1, "messages_dead": 1}
    assert [r[1] for r in app.store.metric_rows("group_depth")] == ["group=mailer,topic=mail"]
    EngineMetricRef("messages_dead", {"group": "mailer"})  # a valid alarm source
    with pytest.raises(ValueError, match="outcome"):
        EngineMetricRef("messages_handled", {"outcome": "maybe"})
    registry = CollectorRegistry()
    registry.register(StoreCollector(app.store))
    text = generate_latest(registry).decode()
    assert 'sagaway_group_depth{group="mailer",topic="mail"} 1.0' in text
    assert 'sagaway_messages_dead_total{group="mailer"} 1.0' in text


def test_the_worked_example_in_docs_messaging_runs_as_written(tmp_path):
    import re
    import subprocess
    import sys

    from tests.processes import ROOT

    text = (ROOT / "docs" / "messaging.md").read_text()
    code = re.search(r"## A worked example.*?```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "shop.py").write_text(code)
    outputs = []
    for _ in range(2):  # the second run on the same file publishes nothing more
        out = subprocess.run(
            [sys.executable, "shop.py"], cwd=tmp_path, capture_output=True, text=True, timeout=90
        )
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout.strip())
    assert outputs == ["1 mail, 3 mugs left", "0 mail, 5 mugs left"]
    app = App(f"sqlite:///{tmp_path / 'shop.db'}")
    try:
        assert {g.group: g.handled for g in app.store.groups()} == {"mailer": 1, "stock": 1}
    finally:
        app.close()


def test_a_refusing_breaker_parks_messages_without_spending_a_try(make_app):
    from sagaway.resilience import CircuitBreaker

    app = make_app()
    breaker = CircuitBreaker("mail-relay", open_for=0.3)  # ask again every 0.3 s
    breaker.force_open()
    attempts = []

    @app.consumer("mail", group="mailer", breaker=breaker, retry=FAST)
    def send(message):
        attempts.append(message.attempt)

    app.publish("mail", {"n": 1})
    with app:
        time.sleep(1.2)  # refused throughout: parked, not tried
        assert attempts == []
        assert app.dead_letters("mailer") == []
        breaker.reset()
        wait_for(lambda: attempts, timeout=10, what="the message after the breaker closed")
    assert attempts == [1]  # the refusals spent no try


def test_prune_deletes_what_every_group_handled_and_keeps_dead_and_waiting_messages(make_app):
    app = make_app()

    @app.consumer("mail", group="mailer", retry=Retry(attempts=1))
    def send(message):
        if message.payload["n"] == 1:
            raise ValueError("bounced")

    for n in range(3):
        app.publish("mail", {"n": n})
    app.publish("mail", {"n": 3}, delay=3600)  # still waiting when pruned
    with app:
        wait_for(lambda: len(app.dead_letters("mailer")) == 1, what="the dead letter")
        wait_for(
            lambda: {g.group: g.handled for g in app.store.groups()} == {"mailer": 2},
            what="two handled",
        )
    assert app.store.prune_messages(time.time() + 1) == 2
    assert count_messages(app, "mail") == 2  # the dead letter and the delayed one
    assert [d.message.payload for d in app.dead_letters("mailer")] == [{"n": 1}]
    groups = {g.group: (g.ready, g.handled, g.dead) for g in app.store.groups()}
    assert groups == {"mailer": (1, 0, 1)}


def test_the_cli_names_the_known_groups_for_an_unknown_one(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    app = App(url)
    handled_by(app, "mail", "mailer")
    with app:
        pass  # registers the group
    app.close()
    out = subprocess.run(
        [sys.executable, "-m", "sagaway.cli", "messages", "dlq", "--db", url, "--group", "x"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "no consumer group 'x' in this store (known: mailer)" in out.stderr


def test_a_message_published_by_a_host_whose_clock_runs_ahead_is_not_held_back(make_app):
    from sagaway.store.messages import NewMessage

    app = make_app()
    seen = handled_by(app, "orders", "mailer")
    ahead = time.time() + 3600  # the publisher's clock is an hour ahead of the consumers'
    app.store.publish([NewMessage("m-ahead", "orders", None, "{}", None, ahead, ahead)])
    later = NewMessage("m-delayed", "orders", None, "{}", None, ahead, ahead + 60)
    app.store.publish([later])  # a real delay stays a delay
    with app:
        wait_for(lambda: seen, timeout=10, what="the message published ahead")
        time.sleep(0.3)
    assert [m.id for m in seen] == ["m-ahead"]


def test_a_step_publishing_without_a_delay_publishes_a_message_without_a_delay(make_app):
    # A checkpoint re-stamps a step's messages with the store's clock: a message without a
    # delay must keep a delay of exactly 0 (else it would wait for its group until then).
    from sagaway import _clock

    app = make_app()

    @app.step
    def place():
        current_step().publish("orders", {"n": 1})

    @app.saga()
    def checkout(ctx):
        place()

    real = _clock.wall
    _clock.wall = lambda: real() + 3529.581  # readings whose sums round differently
    try:
        with app:
            app.start(checkout).result(timeout=20)
    finally:
        _clock.wall = real
    rows = app.store._read(
        lambda cur: cur.all("SELECT published_at, available_at FROM sagaway_messages")
    )
    assert [row[0] == row[1] for row in rows] == [True]
