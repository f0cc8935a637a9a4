import pytest

from sagaway.observe import (
    AlarmDefinitionError,
    AlarmSet,
    AlarmState,
    CompositeAlarm,
    MetricAlarm,
    RuleSyntaxError,
)

OK, ALARM, INSUFFICIENT = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA


@pytest.mark.parametrize(
    ("rule", "states", "expected"),
    [
        ("ALARM(cpu) AND ALARM(disk)", {"cpu": ALARM, "disk": ALARM}, ALARM),
        ("ALARM(cpu) AND ALARM(disk)", {"cpu": ALARM, "disk": OK}, OK),
        ("ALARM(cpu) AND NOT ALARM(deploy)", {"cpu": ALARM, "deploy": ALARM}, OK),
        ("ALARM(cpu) AND NOT ALARM(deploy)", {"cpu": ALARM, "deploy": INSUFFICIENT}, ALARM),
        (
            "(ALARM(cpu) OR ALARM(disk)) AND OK(net)",
            {"cpu": OK, "disk": ALARM, "net": OK},
            ALARM,
        ),
        ("(ALARM(cpu) OR ALARM(disk)) AND OK(net)", {"cpu": ALARM, "disk": OK, "net": ALARM}, OK),
        ("INSUFFICIENT_DATA(cpu)", {"cpu": INSUFFICIENT}, ALARM),
        ("TRUE", {}, ALARM),
        ("FALSE", {}, OK),
        ("False OR TRUE", {}, ALARM),  # keywords are case-insensitive
        ("ALARM(a) OR ALARM(b) AND ALARM(c)", {"a": ALARM, "b": OK, "c": OK}, ALARM),  # AND first
        ("NOT ALARM(a) AND ALARM(b)", {"a": OK, "b": ALARM}, ALARM),  # NOT binds tightest
        ('ALARM("deploy in progress")', {"deploy in progress": ALARM}, ALARM),
        ('ALARM("say \\"hi\\"")', {'say "hi"': ALARM}, ALARM),
        (
            "ALARM(arn:aws:cloudwatch:eu-west-1:1:alarm:x)",
            {"arn:aws:cloudwatch:eu-west-1:1:alarm:x": ALARM},
            ALARM,
        ),
    ],
)
def test_rules_follow_cloudwatch_semantics(rule, states, expected):
    assert CompositeAlarm("composite", rule).evaluate(states) == expected


@pytest.mark.parametrize(
    ("rule", "column", "fragment"),
    [
        ("", 1, "at least one term"),
        ("ALARM(cpu", 10, "expected ')' after the alarm name"),
        ("ALARM cpu", 7, "expected '(' after ALARM"),
        ("ALARM()", 7, "expected an alarm name"),
        ("ALARM(cpu) ALSO ALARM(disk)", 12, "expected AND, OR"),
        ("(ALARM(cpu) OR ALARM(disk)", 27, "close the '(' at column 1"),
        ("ALARM(cpu) AND", 15, "expected ALARM(...)"),
        ('ALARM("cpu)', 7, "unterminated quoted name"),
        ("MAYBE(cpu)", 1, "got 'MAYBE'"),
        ("ALARM(deploy in progress)", 14, "quote names with spaces"),
    ],
)
def test_malformed_rules_point_at_the_mistake(rule, column, fragment):
    with pytest.raises(RuleSyntaxError) as caught:
        CompositeAlarm("c", rule)
    assert caught.value.column == column, str(caught.value)
    assert fragment in caught.value.message


def test_children_are_listed_once_in_order():
    assert CompositeAlarm("c", "ALARM(b) OR OK(a) OR ALARM(b)").children == ("b", "a")


def test_self_reference_is_rejected_at_definition():
    with pytest.raises(AlarmDefinitionError, match="refers to itself"):
        CompositeAlarm("loop", "ALARM(loop)")


def test_alarm_set_rejects_unknown_names_with_a_suggestion():
    alarms = [MetricAlarm("checkout-5xx", 5)]
    with pytest.raises(AlarmDefinitionError, match="did you mean 'checkout-5xx'"):
        AlarmSet(alarms, [CompositeAlarm("down", "ALARM(checkout-5xxx)")])


def test_alarm_set_rejects_cycles_and_shows_them():
    composites = [
        CompositeAlarm("a", "ALARM(b) OR ALARM(x)"),
        CompositeAlarm("b", "ALARM(c)"),
        CompositeAlarm("c", "ALARM(a)"),
    ]
    with pytest.raises(AlarmDefinitionError, match="cycle: a -> b -> c -> a"):
        AlarmSet([MetricAlarm("x", 1)], composites)


def test_alarm_set_rejects_duplicate_names_across_kinds():
    with pytest.raises(AlarmDefinitionError, match="'x' is used more than once"):
        AlarmSet([MetricAlarm("x", 1)], [CompositeAlarm("x", "TRUE")])


def test_alarm_set_evaluates_composites_of_composites_in_dependency_order():
    alarm_set = AlarmSet(
        [MetricAlarm("errors", 1), MetricAlarm("latency", 1)],
        [
            CompositeAlarm("page", "ALARM(checkout) AND NOT ALARM(slo-fast-burn)"),
            CompositeAlarm("checkout", "ALARM(errors) OR ALARM(latency)"),
        ],
        sources=["slo-fast-burn"],
    )
    assert alarm_set.order == ["checkout", "page"]
    states = alarm_set.evaluate({"errors": ALARM, "latency": OK})
    assert states["checkout"] == ALARM and states["slo-fast-burn"] == INSUFFICIENT
    assert states["page"] == ALARM
    states = alarm_set.evaluate({"errors": ALARM, "latency": OK, "slo-fast-burn": ALARM})
    assert states["page"] == OK


def test_external_sources_are_asked_for_their_state():
    class BurnRateAlert:
        name = "slo:checkout:fast-burn"

        def __init__(self):
            self.asked = []

        def state_at(self, timestamp):
            self.asked.append(timestamp)
            return ALARM if timestamp >= 120 else OK

    alert = BurnRateAlert()
    alarm_set = AlarmSet([], [CompositeAlarm("page", f'ALARM("{alert.name}")')], sources=[alert])
    assert alarm_set.evaluate({}, at=60)["page"] == OK
    assert alarm_set.evaluate({}, at=120)["page"] == ALARM
    assert alert.asked == [60, 120]


def test_missing_child_state_at_evaluation_is_a_clear_error():
    with pytest.raises(AlarmDefinitionError, match="needs the state of 'b'"):
        CompositeAlarm("c", "ALARM(a) OR ALARM(b)").evaluate({"a": OK})
