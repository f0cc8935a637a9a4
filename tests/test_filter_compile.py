"""The compiled fast path gives the reference evaluator's answers, line for line."""

import json
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sagaway.observe.filters import FilterPattern, MetricFilter
from sagaway.observe.filters import _compile as filter_compile
from sagaway.observe.filters._match import numeric_value, reference_match, resolve
from sagaway.observe.filters._syntax import Selector

# --- generated lines ---------------------------------------------------------------------

KEYS = ["status", "path", "latency", "a", "ok"]
# Values close to the patterns' literals, so that conditions are often nearly true.
NEAR = st.sampled_from(
    [
        500,
        499,
        501,
        500.0,
        0,
        -3.5,
        100,
        1,
        0.5,
        "/api/cart",
        "x/api/",
        "/api",
        "/web",
        "xweb",
        "web/x",
        "status",
        '"status": 1',
        "a\\b",
        "500",
        "500.0",
        "",
        "true",
        "null",
        "x,y",
        "é\u2028",
        True,
        False,
        None,
    ]
)
SCALARS = st.one_of(
    NEAR,
    NEAR,
    st.integers(-(10**30), 10**30),
    st.floats(),  # also NaN and ±Infinity, which json.dumps writes and json.loads reads
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5)
# Characters that change the meaning of JSON text when inserted anywhere.
SIGNIFICANT = list('{}[]":,\\ \t\n0123456789.-+eEtrufalsn\x01\ufeff')
STYLES = [
    "compact",
    "spaced",
    "whitespace",
    "duplicate",
    "truncated",
    "escaped",
    "padded",
    "extra",
    "mutated",
    "not-object",
    "nested-deep",
]


def _escape_first_letters(text: str) -> str:
    """The same JSON with the first letter of every string (keys too) written as \\uXXXX."""
    return re.sub(r'"([A-Za-z])', lambda m: f'"\\u{ord(m.group(1)):04x}', text)


@st.composite
def lines(draw):
    """A log line: a JSON object written in many ways, or text that is almost one."""
    document = draw(DOCUMENTS)
    style = draw(st.sampled_from(STYLES))
    text = json.dumps(document, separators=(", ", " : "))
    if style == "compact":
        return json.dumps(document, separators=(",", ":"))
    if style == "whitespace":
        return json.dumps(document, separators=(" ,\n", "\t:\r "))
    if style == "duplicate" and document:
        # json.loads keeps the last value of a repeated key.
        key = draw(st.sampled_from(sorted(document)))
        extra = json.dumps(draw(SCALARS))
        first = draw(st.booleans())
        return (
            "{" + f'"{key}": {extra}, ' + text[1:] if first else text[:-1] + f', "{key}": {extra}}}'
        )
    if style == "truncated":
        return text[: draw(st.integers(0, len(text)))]
    if style == "escaped":
        if draw(st.booleans()):
            return _escape_first_letters(text)
        return json.dumps(document, ensure_ascii=True).replace("/", "\\/")
    if style == "padded":
        return (
            draw(st.sampled_from(["", " ", "\t", "\n"]))
            + text
            + draw(
                st.sampled_from(["", " ", "\r\n", "\x0b"])  # \x0b is not JSON whitespace
            )
        )
    if style == "extra":
        return text + draw(st.sampled_from(["x", "{}", " 1", ",", "\ufeff"]))
    if style == "mutated":
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 2))
        return text[:at] + draw(st.sampled_from(SIGNIFICANT)) + text[at + cut :]
    if style == "not-object":
        return draw(
            st.sampled_from(
                [json.dumps(list(document.values())), "42", '"status"', "plain status: 500", ""]
            )
        )
    if style == "nested-deep":
        return '{"status": 500, "a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    return text


# --- generated patterns ------------------------------------------------------------------

SELECTORS = [
    "$.status",
    "$.path",
    "$.latency",
    "$.a.status",
    "$.a[0]",
    "$.a[1].ok",
    "$.a.a[0].status",
    "$.a.ok",
    "$.ok",
]
NUMBERS = ["500", "0", "-3.5", "1e2", "500.0", "+1", ".5", "1E400"]
TEXTS = [
    '"/api/*"',
    "*",
    '"*"',
    "status",
    "%^/a%",
    "%500$%",
    "%api%",
    "true",
    "null",
    '"500"',
    "*web",
    "*api*",
    '"x,y"',
    '""',
]
CONDITIONS = st.one_of(
    st.tuples(
        st.sampled_from(SELECTORS),
        st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
        st.sampled_from(NUMBERS),
    ).map(" ".join),
    st.tuples(st.sampled_from(SELECTORS), st.sampled_from(["=", "!="]), st.sampled_from(TEXTS)).map(
        " ".join
    ),
    st.tuples(
        st.sampled_from(SELECTORS),
        st.sampled_from(["IS NULL", "NOT EXISTS", "IS TRUE", "IS FALSE"]),
    ).map(" ".join),
)
EXPRESSIONS = st.recursive(
    CONDITIONS,
    lambda inner: st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(
        lambda t: f"({t[0]}) {t[1]} {t[2]}"
    ),
    max_leaves=4,
)
PATTERNS = EXPRESSIONS.map(lambda expression: "{ " + expression + " }")
RELAXED = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def _without_pre_check(pattern: str) -> FilterPattern:
    """The pattern compiled with no pre-check, so that its condition sees every line."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(filter_compile, "_leaf_check", lambda condition: None)
        return FilterPattern(pattern)


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True


def _expected_observation(pattern: FilterPattern, selector: str, line: str, default):
    match = reference_match(pattern.ast, line)
    if match is None:
        return default
    path = tuple(
        int(step) if step.isdigit() else step
        for step in selector[2:].replace("[", ".").replace("]", "").split(".")
    )
    return numeric_value(resolve(match.document, Selector(path, selector)))


# --- agreement -----------------------------------------------------------------------------


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(pattern=PATTERNS, line=lines())
# Each guard of the pre-check, and each shortcut of the condition, once for certain:
@example("{ $.status >= 500 }", '{"st\\u0061tus": 503}')  # a key written with an escape
@example("{ $.status >= 500 }", '{"status": 200, "status": 503}')  # json keeps the last
@example('{ $.path = "/api/*" }', '{"msg": "status", "path": "/api/x"}')
@example('{ $.path = "/api/*" }', '{"path": "x/api/"}')  # a suffix wildcard only
@example("{ $.path = *web }", '{"path": "web/x"}')
@example("{ $.path = *api* }", '{"path": "x/api/"}')
@example("{ $.path = %api% }", '{"path": "/api/cart"}')  # a regex is searched for
@example("{ $.ok = * }", '{"ok": false}')  # any value node, booleans too
@example("{ $.ok IS FALSE }", '{"ok": false}')
@example("{ $.ok IS TRUE }", '{"ok": 1}')
@example("{ $.ok >= 0 }", '{"ok": true}')  # a boolean is not a number
@example("{ $.ok = 1 }", '{"ok": true}')
@example("{ $.ok = true }", '{"ok": true}')  # but it equals its spelling
@example("{ $.status = 500 }", '{"status": "500"}')
@example("{ $.status != 500 }", '{"status": [500]}')
@example("{ $.a NOT EXISTS }", '{"a": null}')
@example("{ $.a IS NULL }", '{"b": null}')
def test_compiled_json_matcher_agrees_with_reference(pattern, line):
    compiled = FilterPattern(pattern)
    fast = compiled.match(line)
    slow = compiled.reference(line)
    assert (fast is None) == (slow is None), (pattern, line)
    assert compiled.matches(line) == (slow is not None), (pattern, line)
    if fast is not None:
        assert repr(fast.document) == repr(slow.document)  # repr: NaN is not equal to itself
    unchecked = _without_pre_check(pattern)
    assert (unchecked.match(line) is None) == (slow is None), (pattern, line)
    assert unchecked.matches(line) == (slow is not None), (pattern, line)


@RELAXED
@given(
    pattern=PATTERNS,
    selector=st.sampled_from(SELECTORS),
    default=st.sampled_from([None, 0.0]),
    line=lines(),
)
def test_compiled_observation_agrees_with_reference(pattern, selector, default, line):
    metric = MetricFilter("m", pattern, value=selector, default=default)
    expected = _expected_observation(metric.pattern, selector, line, default)
    assert metric.observe(line) == expected, (pattern, selector, line)
    matched = metric.pattern.reference(line) is not None
    assert metric.matched == matched
    assert metric.value_errors == (matched and expected is None)
    unchecked = MetricFilter("m", _without_pre_check(pattern), value=selector, default=default)
    assert unchecked.observe(line) == expected, (pattern, selector, line)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(pattern=PATTERNS, stream=st.lists(lines(), min_size=1, max_size=60))
def test_streams_agree_while_the_pre_check_switches_on_and_off(pattern, stream):
    # Small windows, so that one short stream goes through sampling and skipping phases.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(filter_compile, "_SAMPLE", 4)
        patch.setattr(filter_compile, "_SKIP", 5)
        compiled = FilterPattern(pattern)
        metric = MetricFilter("m", compiled, value="$.latency", default=-1.0)
    for line in stream:
        expected = compiled.reference(line) is not None
        assert compiled.matches(line) == expected, (pattern, line)
        assert (compiled.match(line) is not None) == expected, (pattern, line)
        assert metric.observe(line) == _expected_observation(compiled, "$.latency", line, -1.0)
    # Three functions share the counter; each counts only lines it parsed.
    assert compiled.unparsable <= 3 * sum(not _is_json(line) for line in stream)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(stream=st.lists(lines(), max_size=30))
def test_unparsable_count_is_exact_when_every_line_is_parsed(stream):
    # NOT EXISTS has no pre-check: every line is parsed, so every malformed line is counted.
    pattern = FilterPattern("{ $.nowhere NOT EXISTS }")
    for line in stream:
        pattern.matches(line)
    assert pattern.unparsable == sum(not _is_json(line) for line in stream)


# --- targeted cases ------------------------------------------------------------------------


def test_pre_check_skipped_for_mostly_matching_lines_gives_the_same_answers():
    pattern = FilterPattern("{ $.status >= 500 }")
    mostly_matching = [json.dumps({"status": 500 + i % 3}) for i in range(3000)]
    assert all(pattern.matches(line) for line in mostly_matching)
    # The pre-check is now being skipped; answers must not change.
    mixed = [json.dumps({"status": s}) for s in (200, 503, "x", None, 499.9, 500.0)]
    assert [pattern.matches(line) for line in mixed] == [False, True, False, False, False, True]
    assert not pattern.matches('{"status": -}') and not pattern.matches("plain text")


@pytest.mark.parametrize(
    "line",
    [
        "[" * 100_000,  # nesting too deep for Python's parser
        '{"status": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"status": 1' + "0" * 5000 + "}",  # more digits than Python converts to int
    ],
)
def test_lines_the_parser_cannot_take_are_counted_not_raised(line):
    for text in ("{ $.status > 1 }", "{ $.status = 5 }", "{ $.x NOT EXISTS }"):
        pattern = FilterPattern(text)
        assert not pattern.matches(line)
        assert pattern.reference(line) is None
        assert pattern.unparsable <= 1  # counted if parsed; the pre-check may rule it out
    assert pattern.unparsable == 1  # NOT EXISTS has no pre-check: the line was parsed


def test_value_beyond_float_range_is_a_value_error_not_a_crash():
    metric = MetricFilter("m", "{ $.a = * }", value="$.a")
    assert metric.observe('{"a": 1' + "0" * 400 + "}") is None
    assert metric.observe('{"a": 1e400}') is None  # json reads it as infinity
    assert metric.value_errors == 2 and metric.matched == 2


def test_json_accepted_exactly_as_json_loads_accepts_it():
    pattern = FilterPattern("{ $.a = 1 }")
    assert pattern.matches(' \t{"a": 1}\r\n')
    assert not pattern.matches('{"a": 1}\x0b')  # not JSON whitespace
    assert not pattern.matches('\ufeff{"a": 1}')  # json.loads refuses a BOM in text
    assert not pattern.matches('{"a": 1}{}')
    assert not pattern.matches('{"a": 1, "b": "\x01"}')  # raw control character
    assert pattern.matches('{"b": NaN, "a": 1}')
    assert pattern.unparsable == 4


def test_pattern_text_never_becomes_source_code():
    hostile = "__import__('os').system('false')"
    pattern = FilterPattern('{ $.cmd = "' + hostile + '" || $.x = %' + hostile + "% }")
    source = pattern._test.source
    assert "__import__" not in source and "cmd" not in source
    assert pattern.matches(json.dumps({"cmd": hostile}))
