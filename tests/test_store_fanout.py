"""The FanoutStore contract on both backends: child runs that name their parent."""

import itertools
import time

import pytest

from sagaway import LeaseLost
from sagaway.store import open_store
from sagaway.store.base import Checkpoint, NewRun, RunStatus, RunUpdate, Wait
from sagaway.store.fanout import ChildCounts, NewChild


@pytest.fixture
def store(store_url):
    opened = open_store(store_url)
    yield opened
    opened.close()


def new_run(run_id, saga="kid", key=None, now=None):
    return NewRun(run_id, saga, key, '{"args": [], "kwargs": {}}', "h", now or time.time())


def parent(store, run_id="p"):
    """A parent run claimed by worker w."""
    record, _ = store.create_run(new_run(run_id, saga="parent"), owner="w", lease_until=1e12)
    return record


_clock = itertools.count(1)


def end(store, run_id, status, now=None, pivot=False):
    """End `run_id` with `status` (claiming every due run, at a later time each call)."""
    at = next(_clock) * 1e12
    (claim,) = [c for c in store.claim("w2", 100, at, at + 5e11) if c.run.id == run_id]
    update = RunUpdate(status=status, due_at=None, owner=None, result='"r"', pivot_passed=pivot)
    store.checkpoint(Checkpoint(run_id, claim.run.epoch, now or time.time(), None, update=update))


def test_children_are_created_once_per_key_due_now_and_listed_by_index(store):
    parent(store)
    kids = [NewChild(new_run(f"c{i}", key=f"p/0.{i}"), i) for i in range(3)]
    store.create_children("p", 0, kids)
    store.create_children("p", 0, kids[:2])  # again: nothing new
    store.create_children("p", 4, [NewChild(new_run("d0", key="p/4.0"), 0)])
    found = store.children("p")
    assert [(c.run.id, c.position, c.index) for c in found] == [
        ("c0", 0, 0), ("c1", 0, 1), ("c2", 0, 2), ("d0", 4, 0),
    ]  # fmt: skip
    assert all(c.run.parent_id == "p" and c.run.status == "pending" for c in found)
    assert store.get_run("c1").parent_id == "p" and store.get_run("p").parent_id is None
    assert [c.run.id for c in store.children("p", position=4)] == ["d0"]
    assert [c.run.id for c in store.children("p", limit=2)] == ["c0", "c1"]
    assert store.child_counts("p", 0) == ChildCounts(created=3, active=3)
    assert {c.run.id for c in store.claim("w2", 10, time.time() + 1, 1e12)} >= {"c0", "c1"}


def test_counts_tell_succeeded_failed_active_and_parked_children(store):
    parent(store)
    store.create_children("p", 0, [NewChild(new_run(f"c{i}", key=f"k{i}"), i) for i in range(4)])
    end(store, "c0", RunStatus.SUCCEEDED)
    end(store, "c1", RunStatus.COMPENSATED)
    at = next(_clock) * 1e12
    (claim,) = [c for c in store.claim("w2", 10, at, at + 5e11) if c.run.id == "c2"]
    park = RunUpdate(
        status=RunStatus.WAITING, due_at=5e12, owner=None, wait=Wait("park:charge", 1, None)
    )
    store.checkpoint(Checkpoint("c2", claim.run.epoch, time.time(), None, update=park))
    assert store.child_counts("p", 0) == ChildCounts(4, 2, 1, 1, 1)
    assert [c.run.id for c in store.children("p", status="succeeded")] == ["c0"]


def test_a_child_ending_wakes_a_parent_resting_on_its_children_only(store):
    record = parent(store)
    rest = RunUpdate(
        status=RunStatus.WAITING, due_at=9e12, owner=None, wait=Wait("children:0", 0, None)
    )
    store.checkpoint(Checkpoint("p", record.epoch, time.time(), None, update=rest))
    store.wake_parent("p", 123.0)
    assert store.get_run("p").due_at == 123.0
    other, _ = store.create_run(new_run("q", saga="parent"), owner="w", lease_until=1e12)
    sleeping = RunUpdate(
        status=RunStatus.WAITING, due_at=9e12, owner=None, wait=Wait("approval", 0, None)
    )
    store.checkpoint(Checkpoint("q", other.epoch, time.time(), None, update=sleeping))
    store.wake_parent("q", 123.0)
    assert store.get_run("q").due_at == 9e12  # waits for a signal, not for children


def test_a_running_parent_woken_by_a_child_does_not_go_to_rest(store):
    record = parent(store)
    store.wake_parent("p", time.time())  # while the parent executes
    rest = RunUpdate(
        status=RunStatus.WAITING, due_at=9e12, owner=None, wait=Wait("children:0", 0, None),
        rest=True,
    )  # fmt: skip
    now = time.time()
    store.checkpoint(Checkpoint("p", record.epoch, now, None, update=rest))
    assert store.get_run("p").due_at == now  # due at once: it looks at its children again


def test_only_a_succeeded_run_before_its_pivot_is_compensated_as_a_run(store):
    parent(store)
    store.create_children("p", 0, [NewChild(new_run(f"c{i}", key=f"k{i}"), i) for i in range(3)])
    end(store, "c0", RunStatus.SUCCEEDED)
    end(store, "c2", RunStatus.SUCCEEDED, pivot=True)
    now = time.time()
    compensating = store.compensate_run("c0", now, '{"type": "x", "message": "parent unwinds"}')
    assert compensating.status == "compensating" and compensating.due_at == now
    assert compensating.owner is None
    assert store.compensate_run("c1", now, "{}").status == "running"  # not ended: unchanged
    assert store.compensate_run("c2", now, "{}").status == "succeeded"  # past its pivot
    assert store.compensate_run("nope", now, "{}") is None
    assert [e.kind for e in store.events("c0")][-1] == "compensation_requested"


def test_cancelling_children_flags_those_under_way_only(store):
    parent(store)
    store.create_children("p", 0, [NewChild(new_run(f"c{i}", key=f"k{i}"), i) for i in range(3)])
    end(store, "c0", RunStatus.SUCCEEDED)
    assert store.cancel_children("p", time.time()) == 2
    assert store.cancel_children("p", time.time()) == 0  # asked already
    assert [store.get_run(f"c{i}").cancel_requested for i in range(3)] == [False, True, True]


def test_an_unwinding_rest_is_fenced_and_stays_compensating(store):
    record = parent(store)
    now = time.time()
    store.checkpoint(
        Checkpoint("p", record.epoch, now, None, update=RunUpdate(status=RunStatus.COMPENSATING))
    )
    store.rest_unwinding("p", record.epoch, now, now + 10, Wait("children:undo", 0, None))
    rested = store.get_run("p")
    assert (rested.status, rested.owner, rested.due_at) == ("compensating", None, now + 10)
    with pytest.raises(LeaseLost):
        store.rest_unwinding("p", record.epoch + 5, now, now + 10, Wait("children:undo", 0, None))


def test_prune_keeps_the_children_of_a_parent_that_has_not_settled(store):
    parent(store)
    store.create_children("p", 0, [NewChild(new_run("c0", key="k0"), 0)])
    end(store, "c0", RunStatus.SUCCEEDED, now=1.0)
    assert store.prune_runs(time.time(), ["succeeded"]) == 0  # p still runs
    end(store, "p", RunStatus.SUCCEEDED, now=1.0)
    assert store.prune_runs(time.time(), ["succeeded"]) == 2


def test_a_resting_parent_flagged_by_a_signal_is_still_woken_by_a_child(store):
    record = parent(store)
    rest = RunUpdate(
        status=RunStatus.WAITING, due_at=9e12, owner=None, wait=Wait("children:0", 0, None)
    )
    store.checkpoint(Checkpoint("p", record.epoch, time.time(), None, update=rest))
    store.send_signal("p", "approved", "{}", time.time())  # for a later wait: flags the run
    assert store.get_run("p").due_at == 9e12
    store.wake_parent("p", 123.0)
    store.wake_parent("p", 456.0)  # due already: left as it is
    assert store.get_run("p").due_at == 123.0
