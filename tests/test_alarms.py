"""Metric alarm evaluation, written from CloudWatch's "Configuring how CloudWatch alarms treat
missing data" tables: 0 = a non-breaching datapoint, X = breaching, - = missing; five
datapoints are retrieved (the evaluation range), oldest first."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagaway.observe import AlarmState, MetricAlarm
from sagaway.observe.alarms import AlarmDefinitionError

OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA
RETAIN = "retain current state"
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


def points(text: str) -> list[float | None]:
    """'0 - X' -> [0.0, None, 10.0] for an alarm with threshold 5 (>=)."""
    return [{"0": 0.0, "X": 10.0, "-": None}[c] for c in text.split()]


def check_row(m, n, data, expected):
    for treatment, want in zip(TREATMENTS, expected, strict=True):
        alarm = MetricAlarm(
            "t", threshold=5, evaluation_periods=n, datapoints_to_alarm=m, treat_missing=treatment
        )
        for previous in (OK, ALARM, INSUFFICIENT):
            got = alarm.evaluate(points(data), previous=previous)
            assert got == (previous if want == RETAIN else want), (data, treatment, previous)


# Datapoints to alarm = 3, evaluation periods = 3.
# Columns: MISSING, IGNORE, BREACHING, NOT BREACHING.
THREE_OF_THREE = [
    ("0 - X - X", (OK, OK, OK, OK)),
    ("0 - - - -", (OK, OK, OK, OK)),
    ("- - - - -", (INSUFFICIENT, RETAIN, ALARM, OK)),
    ("0 X X - X", (ALARM, ALARM, ALARM, ALARM)),
    ("- - - - X", (INSUFFICIENT, RETAIN, ALARM, OK)),
    ("X - - - -", (ALARM, RETAIN, ALARM, OK)),
]

# Datapoints to alarm = 2, evaluation periods = 3 (an M of N alarm).
TWO_OF_THREE = [
    ("0 - X - X", (ALARM, ALARM, ALARM, ALARM)),
    ("0 0 X 0 X", (ALARM, ALARM, ALARM, ALARM)),
    ("0 - X - -", (OK, OK, ALARM, OK)),
    ("- - - - 0", (OK, OK, ALARM, OK)),
    ("- - - - X", (INSUFFICIENT, RETAIN, ALARM, OK)),
]


@pytest.mark.parametrize(("data", "expected"), THREE_OF_THREE)
def test_cloudwatch_table_three_of_three(data, expected):
    check_row(3, 3, data, expected)


@pytest.mark.parametrize(("data", "expected"), TWO_OF_THREE)
def test_cloudwatch_table_two_of_three(data, expected):
    check_row(2, 3, data, expected)


def test_with_enough_present_datapoints_the_most_recent_n_decide_and_gaps_are_skipped():
    alarm = MetricAlarm("t", threshold=5, evaluation_periods=3, treat_missing="breaching")
    # Three present datapoints: the missing one is skipped, treat_missing is not used.
    assert alarm.evaluate(points("X - 0 0 0")) == OK
    assert alarm.evaluate(points("0 X - X X")) == ALARM


def test_comparisons_and_cloudwatch_operator_names():
    assert MetricAlarm("t", 5, ">").evaluate([5]) == OK
    assert MetricAlarm("t", 5, ">=").evaluate([5]) == ALARM
    assert MetricAlarm("t", 5, "LessThanThreshold").evaluate([4.9]) == ALARM
    assert MetricAlarm("t", 5, "<=").evaluate([6]) == OK
    assert MetricAlarm("t", 5, "<=").comparison == "<="


def test_datapoints_to_alarm_defaults_to_evaluation_periods_and_range_to_n_plus_two():
    alarm = MetricAlarm("t", 1, evaluation_periods=4)
    assert alarm.datapoints_to_alarm == 4
    assert alarm.evaluation_range == 6


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"evaluation_periods": 3, "datapoints_to_alarm": 4}, "1 <= M <= N"),
        ({"evaluation_periods": 0}, "evaluation_periods (N) must be an integer >= 1"),
        ({"datapoints_to_alarm": 0}, "1 <= M <= N"),
        ({"treat_missing": "zero"}, "treat_missing 'zero'"),
        ({"comparison": "=="}, "comparison '=='"),
        ({"statistic": "median"}, "unknown statistic"),
        ({"period": 0}, "period must be positive"),
        ({"threshold": "high"}, "threshold must be a number"),
        ({"evaluation_periods": 3, "evaluation_range": 2}, "evaluation_range"),
    ],
)
def test_invalid_definitions_are_rejected_with_the_reason(kwargs, fragment):
    args = {"name": "t", "threshold": 1, **kwargs}
    with pytest.raises(AlarmDefinitionError) as caught:
        MetricAlarm(**args)
    assert fragment in str(caught.value)


@given(n=st.integers(1, 10), m=st.integers(-2, 12))
def test_m_must_not_exceed_n(n, m):
    if 1 <= m <= n:
        assert (
            MetricAlarm("t", 1, evaluation_periods=n, datapoints_to_alarm=m).datapoints_to_alarm
            == m
        )
    else:
        with pytest.raises(AlarmDefinitionError):
            MetricAlarm("t", 1, evaluation_periods=n, datapoints_to_alarm=m)


@given(
    n=st.integers(1, 6),
    data=st.data(),
    length=st.integers(0, 12),
    previous=st.sampled_from(list(AlarmState)),
)
def test_ignore_never_changes_state_on_all_missing_data(n, data, length, previous):
    m = data.draw(st.integers(1, n))
    alarm = MetricAlarm("t", 1, evaluation_periods=n, datapoints_to_alarm=m, treat_missing="ignore")
    assert alarm.evaluate([None] * length, previous=previous) == previous


@given(
    n=st.integers(1, 5),
    data=st.data(),
    values=st.lists(st.one_of(st.none(), st.sampled_from([0.0, 10.0])), max_size=8),
)
def test_breaching_and_not_breaching_bound_the_other_treatments(n, data, values):
    """Treating gaps as breaching can only push towards ALARM; as not breaching, towards OK."""
    m = data.draw(st.integers(1, n))

    def state(treatment):
        return MetricAlarm(
            "t", 5, evaluation_periods=n, datapoints_to_alarm=m, treat_missing=treatment
        ).evaluate(values, previous=OK)

    if state("breaching") == OK:
        assert state("notBreaching") == OK and state("missing") in (OK, INSUFFICIENT)
    if state("notBreaching") == ALARM:
        assert state("breaching") == ALARM and state("missing") == ALARM


def test_alarm_state_is_a_str_enum_with_cloudwatch_spellings():
    assert [s.value for s in AlarmState] == ["OK", "ALARM", "INSUFFICIENT_DATA"]
    assert AlarmState.ALARM == "ALARM" and isinstance(AlarmState.OK, str)
