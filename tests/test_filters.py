import json

import pytest

from sagaway.observe.filters import FilterPattern, FilterPatternError, MetricFilter

# --- terms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "line", "expected"),
    [
        ("ERROR", "[ERROR] A fatal exception has occurred", True),
        ("ERROR", "Exiting with ERRORCODE: -1", True),
        ("ERROR", "error: lower case", False),  # case sensitive
        ('"ERROR" -"Exiting"', "Exiting with ERRORCODE: -1", False),
        ('"ERROR" - "Exiting"', "[ERROR] boom", True),
        ("ERROR Exception", "[ERROR] Caught IllegalArgumentException", True),
        ("ERROR Exception", "[ERROR] something else", False),
        ("ERROR -DEBUG", "ERROR in module", True),
        ("ERROR -DEBUG", "DEBUG ERROR in module", False),
        ("?ERROR ?WARN", "WARN message", True),
        ("?ERROR ?WARN", "INFO message", False),
        ('"Failed to process"', "[WARN] Failed to process the request", True),
        ('"Failed to process"', "[WARN] Failed to really process", False),
        ("%ERROR [0-9]{3}%", "ERROR 503 upstream", True),
        ("%ERROR [0-9]{3}%", "ERROR upstream", False),
        ("", "anything at all", True),
        ('""', "anything at all", True),
    ],
)
def test_term_patterns_follow_cloudwatch_examples(pattern, line, expected):
    assert FilterPattern(pattern).matches(line) is expected


def test_question_mark_starts_an_alternative_and_plain_terms_join_it():
    pattern = FilterPattern("?ERROR Exception ?WARN")
    assert pattern.matches("ERROR Exception")
    assert pattern.matches("WARN alone")
    assert not pattern.matches("ERROR alone")


# --- JSON --------------------------------------------------------------------------------

EVENT = {
    "eventType": "UpdateTrail",
    "sourceIPAddress": "111.111.111.111",
    "arrayKey": ["value", "another value"],
    "objectList": [{"name": "a", "id": 1}, {"name": "b", "id": 2}],
    "SomeObject": None,
    "ThisFlag": True,
}
COMPOUND = {
    "user": {"id": 1, "email": "John.Stiles@example.com"},
    "users": [{"id": 2, "email": "John.Doe@example.com"}, {"id": 3, "email": "Jane@example.com"}],
    "actions": ["GET", "PUT", "DELETE"],
    "coordinates": [[0, 1, 2], [4, 5, 6], [7, 8, 9]],
}


@pytest.mark.parametrize(
    ("pattern", "document", "expected"),
    [
        ('{ $.eventType = "UpdateTrail" }', EVENT, True),
        ("{ $.sourceIPAddress != 123.123.* }", EVENT, True),
        ("{ $.sourceIPAddress != 111.111.* }", EVENT, False),
        ('{ $.arrayKey[0] = "value" }', EVENT, True),
        ("{ $.objectList[1].id = 2 }", EVENT, True),
        ("{ $.SomeObject IS NULL }", EVENT, True),
        ("{ $.eventType IS NULL }", EVENT, False),
        ("{ $.SomeOtherObject NOT EXISTS }", EVENT, True),
        ("{ $.SomeObject NOT EXISTS }", EVENT, False),
        ("{ $.ThisFlag IS TRUE }", EVENT, True),
        ("{ $.ThisFlag IS FALSE }", EVENT, False),
        ("{ $.eventType = *Trail }", EVENT, True),
        ("{ $.eventType = Update* }", EVENT, True),
        ("{ $.eventType = Up*ail }", EVENT, False),  # an inner * is literal
        ("{ $.eventType = %^Update% }", EVENT, True),
        ('{ ($.user.id = 1) && ($.users[0].email = "John.Doe@example.com") }', COMPOUND, True),
        (
            '{ ($.user.id = 2 && $.users[0].email = "nonmatch") || $.actions[2] = "GET" }',
            COMPOUND,
            False,
        ),
        (
            '{ $.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = nonmatch'
            " && $.actions[2] = nomatch }",
            COMPOUND,
            True,
        ),
        (
            '{ ($.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = nonmatch)'
            " && $.actions[2] = nomatch }",
            COMPOUND,
            False,
        ),
        ("{ $.coordinates[2][0] >= 7 }", COMPOUND, True),
        ("{ $.users = 1 }", {"users": [1, 2, 3]}, False),  # arrays are not value nodes
        ("{ $.users != 1 }", {"users": [1, 2, 3]}, False),
        ("{ $.latency >= 500 }", {"latency": 500}, True),
        ("{ $.latency > +1000 }", {"latency": 1000.5}, True),
        ("{ $.n < 10e3 }", {"n": 9999}, True),
        ("{ $.n < 10e-3 }", {"n": 0.01}, False),
        ("{ $.errorCode = 400 }", {"errorCode": 400.0}, True),
        ("{ $.errorCode != 500 }", {"other": 1}, False),  # a missing field matches nothing
        ("{ $.code = 404 }", {"code": "404"}, True),  # = also matches the same spelling
        ("{ $.code > 400 }", {"code": "404"}, False),  # ordering needs a number
        ("{ $.flag = true }", {"flag": True}, True),
        ("{ $.latency = * }", {"latency": 0}, True),
        ("{ $.latency = * }", {"latency": None}, False),
        ('{ $.status >= 500 && $.path = "/api/*" }', {"status": 502, "path": "/api/x"}, True),
        ("{ $.@timestamp = 2024* }", {"@timestamp": "2024-01-01"}, True),
    ],
)
def test_json_patterns_follow_cloudwatch_examples(pattern, document, expected):
    compiled = FilterPattern(pattern)
    line = json.dumps(document)
    assert compiled.matches(line) is expected
    assert (compiled.reference(line) is not None) is expected


def test_json_patterns_never_match_lines_that_are_not_json_objects():
    pattern = FilterPattern("{ $.missing NOT EXISTS }")
    assert pattern.matches('{"a": 1}')
    for line in ["plain text", "[1, 2]", '{"a": 1', "42", ""]:
        assert not pattern.matches(line)
    assert pattern.unparsable >= 2


def test_json_pattern_sees_escaped_text_the_parser_sees():
    pattern = FilterPattern('{ $.path = "/api/*" }')
    assert pattern.matches('{"path": "\\/api\\/cart"}')  # JSON may escape "/"
    assert pattern.matches('{"p\\u0061th": "/api/x"}')


# --- space-delimited -----------------------------------------------------------------------

COLS = "ip, user, username, timestamp, request"
APACHE = [
    '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 200 1534',
    '127.0.0.1 - frank [10/Oct/2000:13:35:22 -0700] "GET /index.html HTTP/1.0" 404 5324',
    '127.0.0.1 - frank [10/Oct/2000:13:50:35 -0700] "GET /apache_pb.gif HTTP/1.0" 500 4355',
]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (f"[{COLS}, status_code, bytes]", [True, True, True]),
        (f"[{COLS}, status_code, bytes > 4000]", [False, True, True]),
        (f"[{COLS}, status_code = 200, bytes]", [True, False, False]),
        (f"[{COLS}, status_code = 4*, bytes]", [False, True, False]),
        (f"[{COLS[:-9]}, request = *html*, status_code = 4*, bytes]", [False, True, False]),
        ("[..., status_code, bytes]", [True, True, True]),
        ("[ip, user, ...]", [True, True, True]),
        ("[ip, user, ..., status = 5*, bytes > 1000]", [False, False, True]),
        ("[..., request=*.html*, status_code=4*,]", [False, True, False]),
        ("[..., status_code = 4* && status_code != 403, bytes]", [False, True, False]),
        ("[..., status_code = 200 || status_code = 500, bytes]", [True, False, True]),
        (f"[{COLS}, status_code]", [False, False, False]),
        ("[a, b, c, d, e, f, g, h, ...]", [False, False, False]),
        ("[ip, ..., bytes >= 5324]", [False, True, False]),
    ],
)
def test_space_delimited_patterns_follow_cloudwatch_examples(pattern, expected):
    compiled = FilterPattern(pattern)
    assert [compiled.matches(line) for line in APACHE] == expected


def test_space_delimited_fields_strip_brackets_and_quotes():
    match = FilterPattern(f"[{COLS}, status_code, bytes]").match(APACHE[1])
    assert match.fields["timestamp"] == "10/Oct/2000:13:35:22 -0700"
    assert match.fields["request"] == "GET /index.html HTTP/1.0"
    assert match.fields["$7"] == "5324"


# --- malformed patterns ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "column", "fragment"),
    [
        ("{ $.status >= }", 15, "expected a value after '>='"),
        ("{ status = 500 }", 3, "selector starting with '$.'"),
        ('{ $.path = "/api }', 12, "unterminated string"),
        ("{ $.status >= abc }", 15, "compares numbers"),
        ("{ $.a = 1 && }", 14, "selector"),
        ("{ ($.a = 1 }", 12, "expected ')'"),
        ("{ $.a = 1 } trailing", 13, "after the closing '}'"),
        ("{ $.a = 1", 10, "closing '}'"),
        ("{ }", 3, "empty JSON pattern"),
        ("{ $ = 1 }", 3, "names a property"),
        ("{ $.a IS MAYBE }", 10, "NULL, TRUE or FALSE"),
        ("{ $.a NOT THERE }", 11, "EXISTS"),
        ("{ $.a ~ 1 }", 7, "expected a comparison"),
        ("{ $.a = %[unclosed% }", 10, "invalid regular expression"),
        ("{ $.a = %abc }", 9, "unterminated regular expression"),
        ("{ $.a > %x% }", 9, "regular expression can only follow"),
        ("[a, ..., b, ...]", 13, "only one '...'"),
        ("[a, a]", 5, "used twice"),
        ("[a, b = 5 && c > 1]", 14, "not a column"),
        ("[a, b", 6, "expected ',' or ']'"),
        ("[a, !b]", 5, "column name"),
        ("ERROR -", 7, "expected a term after '-'"),
        ('ERROR "unclosed', 7, "unterminated string"),
        ("ERROR { $.a = 1 }", 7, "only at the beginning"),
    ],
)
def test_malformed_patterns_point_at_the_mistake(pattern, column, fragment):
    with pytest.raises(FilterPatternError) as caught:
        FilterPattern(pattern)
    error = caught.value
    assert error.column == column, str(error)
    assert fragment in error.message
    # The rendered message shows the pattern with a caret under the column.
    lines = str(error).splitlines()
    assert lines[1].strip() == pattern.strip()
    assert lines[2].index("^") - 2 == column - 1


# --- metric values ----------------------------------------------------------------------------


def test_metric_value_is_one_per_match_and_default_for_other_lines():
    errors = MetricFilter("errors", "{ $.status >= 500 }", default=0)
    assert errors.observe('{"status": 503}') == 1.0
    assert errors.observe('{"status": 200}') == 0.0
    assert MetricFilter("no-default", "ERROR").observe("fine") is None
    assert errors.matched == 1


def test_metric_value_from_json_field_and_from_column():
    latency = MetricFilter("latency", "{ $.latency = * }", value="$.latency")
    assert latency.observe('{"latency": 12.5}') == 12.5
    assert latency.observe('{"latency": "7"}') == 7.0
    assert latency.observe('{"latency": "slow"}') is None
    assert latency.value_errors == 1
    size = MetricFilter("bytes", "[..., status, bytes]", value="$bytes")
    assert size.observe(APACHE[0]) == 1534.0
    assert MetricFilter("pos", "[..., status, bytes]", value="$7").observe(APACHE[2]) == 4355.0


@pytest.mark.parametrize(
    ("pattern", "value", "fragment"),
    [
        ("ERROR", "$.latency", "must be a JSON pattern"),
        ("{ $.a = 1 }", "$bytes", "must be space-delimited"),
        ("[a, b]", "$c", "names no column"),
        ("ERROR", "lots", "must be a number"),
    ],
)
def test_metric_value_that_does_not_fit_the_pattern_is_rejected(pattern, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        MetricFilter("m", pattern, value=value)
