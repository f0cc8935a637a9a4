"""Property: random sagas with random failure points end in a consistent terminal state,
with compensations in exact reverse order of the steps that ran."""

import itertools
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagaway import Retry, SagaCompensated, SagaFailed

ATTEMPTS = 3
step_plan = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["undoable", "plain"]),  # plain: no compensation
        "fails": st.sampled_from([0, 0, 0, 1, 2, ATTEMPTS]),  # failed tries before success
        "undo_fails": st.sampled_from([0, 0, 0, 1, ATTEMPTS]),
    }
)
saga_plan = st.tuples(
    st.lists(step_plan, min_size=1, max_size=6),
    st.one_of(st.none(), st.integers(0, 5)),  # index of the pivot step, if any
)


def expected(steps, pivot):
    """What DESIGN.md's semantics say must happen: (status, bodies run, undos run)."""
    ran, undone = [], []
    failed_at = None
    for i, plan in enumerate(steps):
        ran.extend([i] * min(plan["fails"] + 1, ATTEMPTS))
        if plan["fails"] >= ATTEMPTS:
            failed_at = i
            break
    if failed_at is None:
        return "succeeded", ran, undone
    if pivot is not None and pivot < failed_at:
        return "failed", ran, undone
    for i in range(failed_at, -1, -1):  # the failing step itself first, then newest first
        plan = steps[i]
        if plan["kind"] != "undoable" or i == pivot:
            continue
        undone.extend([i] * min(plan["undo_fails"] + 1, ATTEMPTS))
        if plan["undo_fails"] >= ATTEMPTS:
            return "failed", ran, undone
    return "compensated", ran, undone


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=saga_plan)
def test_random_sagas_end_consistently_and_unwind_in_reverse(app, plan):
    steps, pivot = plan
    if pivot is not None and pivot >= len(steps):
        pivot = None
    _run_plan(app, steps, pivot)


_declared: dict[int, dict] = {}
_plans: dict[str, tuple] = {}
_ids = itertools.count()


def _declare(app):
    """Six positions x (undoable, plain, pivot) steps, driven by the plan of each run."""
    if id(app) in _declared:
        return _declared[id(app)]
    tries: dict = defaultdict(int)
    log: dict = defaultdict(list)
    fast = Retry(attempts=ATTEMPTS, base=0.0005, cap=0.001)

    def make(i, kind):
        def body(plan_id):
            steps = _plans[plan_id][0]
            log[plan_id].append(("do", i))
            tries[(plan_id, i)] += 1
            if tries[(plan_id, i)] <= steps[i]["fails"]:
                raise ConnectionError(f"step {i} down")
            return i

        body.__name__ = f"{kind}{i}"
        step = app.step(body, retry=fast, pivot=(kind == "pivot"))
        if kind == "undoable":

            @step.compensation(retry=fast)
            def undo(plan_id, result=None):
                steps = _plans[plan_id][0]
                log[plan_id].append(("undo", i))
                tries[(plan_id, i, "undo")] += 1
                if tries[(plan_id, i, "undo")] <= steps[i]["undo_fails"]:
                    raise ConnectionError(f"undo {i} down")

        return step

    table = {(i, kind): make(i, kind) for i in range(6) for kind in ("undoable", "plain", "pivot")}

    @app.saga()
    def random_saga(ctx, plan_id):
        steps, pivot = _plans[plan_id]
        for i, plan in enumerate(steps):
            table[(i, "pivot" if i == pivot else plan["kind"])](plan_id)
        return "done"

    app.launch()
    _declared[id(app)] = {"log": log, "saga": random_saga}
    return _declared[id(app)]


def _run_plan(app, steps, pivot):
    declared = _declare(app)
    plan_id = f"p{next(_ids)}"
    _plans[plan_id] = (steps, pivot)
    status, ran, undone = expected(steps, pivot)
    run = app.start(declared["saga"], plan_id)
    try:
        assert run.result(timeout=20) == "done"
        outcome = "succeeded"
    except SagaCompensated:
        outcome = "compensated"
    except SagaFailed:
        outcome = "failed"
    log = declared["log"][plan_id]
    assert outcome == status == run.status
    assert [i for what, i in log if what == "do"] == ran
    assert [i for what, i in log if what == "undo"] == undone
