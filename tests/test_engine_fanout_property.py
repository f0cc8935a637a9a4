"""Property: random maps with random failures end in a consistent terminal state, with
exactly the branches that finished compensated, newest completion first."""

import itertools
import threading
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagaway import Permanent, Retry, SagaCompensated

map_plan = st.fixed_dictionaries(
    {
        "items": st.integers(1, 8),
        "concurrency": st.integers(1, 4),
        "tolerated": st.one_of(st.integers(0, 3), st.sampled_from([0.0, 0.25, 0.5, 0.9])),
        "failing": st.sets(st.integers(0, 7), max_size=5),
        "children": st.sampled_from([False, False, True]),  # child runs cost more: fewer
    }
)

_declared: dict[int, dict] = {}
_plans: dict[str, dict] = {}
_ids = itertools.count()


def _declare(app):
    if id(app) in _declared:
        return _declared[id(app)]
    log: dict = defaultdict(list)
    lock = threading.Lock()

    @app.step(retry=Retry(attempts=1))
    def work(item):
        plan_id, i = item
        with lock:
            log[plan_id].append(("do", i))
        if i in _plans[plan_id]["failing"]:
            raise Permanent(f"item {i} fails")
        return i

    @work.compensation(retry=Retry(attempts=2, base=0.001))
    def undo(item, result=None):
        plan_id, i = item
        with lock:
            log[plan_id].append(("undo", i, result))

    @app.saga()
    def kid(ctx, item):
        return work(item)

    @app.saga()
    def random_map(ctx, plan_id):
        plan = _plans[plan_id]
        fn = kid if plan["children"] else work
        items = [[plan_id, i] for i in range(plan["items"])]
        ctx.map(fn, items, concurrency=plan["concurrency"], tolerated_failures=plan["tolerated"])
        return "done"

    app.launch()
    _declared[id(app)] = {"log": log, "saga": random_map}
    return _declared[id(app)]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=map_plan)
def test_random_maps_end_consistently_and_compensate_exactly_the_finished_branches(app, plan):
    declared = _declare(app)
    plan_id = f"m{next(_ids)}"
    _plans[plan_id] = plan
    run = app.start(declared["saga"], plan_id)
    try:
        assert run.result(timeout=30) == "done"
        outcome = "succeeded"
    except SagaCompensated:
        outcome = "compensated"
    log = declared["log"][plan_id]
    (line,) = [s for s in run.steps if s.phase == "forward"]
    branches = {b.index: b for b in line.branches}
    failed = {i for i, b in branches.items() if b.status != "ok"}
    tolerated = plan["tolerated"]
    if isinstance(tolerated, float):
        tolerated = int(tolerated * plan["items"])
    ran = sorted(i for what, i, *_ in log if what == "do")
    # Every branch that ran was recorded, once; a failure is one of the planned ones.
    assert ran == sorted(branches)
    assert failed <= plan["failing"]
    undone = [(i, result) for what, i, *rest in log if what == "undo" for result in rest]
    if outcome == "succeeded":
        assert run.status == "succeeded" and line.status == "ok"
        assert len(failed) <= tolerated
        assert sorted(branches) == list(range(plan["items"]))  # every item ran
        # Only failed children undo themselves (each in its own run: in any order); no map
        # branch is compensated.
        assert sorted(undone) == ([(i, None) for i in sorted(failed)] if plan["children"] else [])
        return
    assert run.status == "compensated" and line.status == "failed"
    assert len(failed) > tolerated
    newest_first = sorted(branches.values(), key=lambda b: (b.finished_at, b.index), reverse=True)
    if plan["children"]:
        # Failed children undid themselves when they failed; the succeeded ones are undone
        # as runs by the parent, newest completion first.
        themselves = [(i, None) for i in sorted(failed)]
        assert sorted(undone[: len(failed)]) == themselves
        assert undone[len(failed) :] == [
            (b.index, b.index) for b in newest_first if b.index not in failed
        ]
        assert {c.status for c in app.children(run.id)} == {"compensated"}
    else:
        expected = [(b.index, None if b.index in failed else b.index) for b in newest_first]
        assert undone == expected
