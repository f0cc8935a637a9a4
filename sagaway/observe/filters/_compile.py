"""The compiled matcher: filter patterns turned into fast functions of one line.

`compile_matcher` (`line -> Match | None`), `compile_test` (`line -> bool`) and
`compile_observer` (`line -> float | None`, a metric filter's observation) give the answers
of `reference_match` in _match.py, faster. A JSON pattern becomes one generated Python
function per use, doing in order:

1. a rejecting *pre-check* on the raw text that rules out most non-matching lines without
   parsing them (below), switched off for a while when it lets most lines through;
2. parsing with the json module's C scanner called directly, which skips the Python-level
   wrapper of `json.loads` (a large part of its time on a log line of a few hundred bytes).
   Only a line the scanner takes whole from its first character is accepted this way;
   anything else (leading or trailing whitespace, extra data, an error) goes through
   `json.loads` itself, so exactly what `json.loads` accepts is accepted;
3. the condition as one Python expression over the parsed dict, with the fetched values in
   local variables: about what a hand-written `if` costs.

The generated source holds generated names only: every key, literal and regex of the pattern
is passed in as a constant and never spliced into the source text.

Why the pre-check is sound: in a line with no backslash, a JSON string cannot contain a `"`,
so every occurrence of `"key"` followed by `:` is a real object key and the token after the
colon is its raw value. If the last key of a selector occurs nowhere, the selector cannot
resolve; if it occurs exactly once, that occurrence is the only value the selector could
resolve to, so a comparison that fails on it fails for the line. Any other case (a backslash,
a repeated key, an array index, an unusual value token) lets the line through to parsing.
A line the pre-check rules out is never parsed, so it is not known whether it was valid JSON:
the count of unparsable lines covers the parsed lines only. Tests check the compiled and the
reference matchers agree on generated lines and patterns.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from typing import Any

from sagaway.observe.filters._match import (
    MISSING,
    Match,
    compare_json,
    numeric_value,
    reference_match,
    resolve,
    term_found,
)
from sagaway.observe.filters._syntax import (
    AnyValue,
    BoolCheck,
    Comparison,
    Expr,
    JsonPattern,
    Logical,
    MatchAll,
    NotExists,
    NullCheck,
    NumberValue,
    Pattern,
    RegexValue,
    Selector,
    StringValue,
    TermPattern,
)

__all__ = ["INVALID", "compile_matcher", "compile_observer", "compile_test", "parse_json"]

INVALID = object()
"""What `parse_json` returns for a line that is not valid JSON."""

_TEXT_MATCH = Match()


def parse_json(line: str) -> Any:
    """`json.loads(line)`, or `INVALID` when that raises (also for nesting too deep to parse)."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return INVALID


# The scanner of a default JSONDecoder is the one json.loads uses (same parse_float,
# parse_int, strict). Called at index 0 it parses one value and returns where it ended.
_SCAN = json.JSONDecoder().scan_once


# --- the pre-check on the raw line ---------------------------------------------------------

# After `"key"`: a colon, then a JSON number, a string without escapes, a literal, or any
# other character (the start of a container, or of something that is not JSON).
_VALUE_AFTER_KEY = re.compile(
    r'\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|"[^"]*"|true|false|null|.)'
)
_NUMBER_AFTER_KEY = re.compile(r"\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")
_ORDERINGS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_LITERALS = {"true": True, "false": False, "null": None}

Check = Callable[[str], bool]


def _number(token: str) -> Any:
    """A JSON number token converted as json.loads converts it; MISSING when json.loads
    would fail (an integer of more digits than Python converts)."""
    try:
        return float(token) if any(c in token for c in ".eE") else int(token)
    except ValueError:
        return MISSING


def _token_value(token: str) -> Any:
    if token in _LITERALS:
        return _LITERALS[token]
    if token[0] == '"':
        return token[1:-1]
    if token != "-" and (token[0] == "-" or token[0].isdigit()):
        return _number(token)
    return MISSING


def _leaf_check(cond: Expr) -> Check | None:
    """A check that returns False only when `cond` is certainly false for the line."""
    if isinstance(cond, NotExists | Logical) or not isinstance(cond.target, Selector):
        return None
    key = cond.target.path[-1]
    if not isinstance(key, str):
        return None
    needle = '"' + key + '"'
    skip = len(needle)
    value_at = _VALUE_AFTER_KEY.match

    want = cond.value if isinstance(cond, Comparison) else None
    if isinstance(want, NumberValue) and cond.op in _ORDERINGS:
        # The hot case (`$.status >= 500`): compare the raw number without building values.
        compare, bound = _ORDERINGS[cond.op], want.number
        number_at = _NUMBER_AFTER_KEY.match
        seen: dict[str, bool] = {}

        def ordering(line: str) -> bool:
            i = line.find(needle)
            if i < 0:
                return False
            if line.rfind(needle) != i:
                return True
            # The text from the key to the next comma holds the whole number token if there
            # is one (a number has no comma), so it decides alone; status codes and the like
            # repeat, so short texts' verdicts are remembered (a few thousand at most).
            start = i + skip
            end = line.find(",", start)
            after = line[start:end] if end >= 0 else line[start:]
            verdict = seen.get(after)
            if verdict is None:
                # No number after `"key":` means no such key, or a value that never orders.
                m = number_at(after)
                number = MISSING if m is None else _number(m.group(1))
                # A token json.loads rejects may still match as far as this check can tell.
                verdict = m is not None and (number is MISSING or compare(number, bound))
                if len(after) <= 40 and len(seen) < 4096:
                    seen[after] = verdict
            return verdict

        return ordering

    if isinstance(cond, NullCheck):

        def holds(value: Any) -> bool:
            return value is None

    elif isinstance(cond, BoolCheck):
        expected = cond.value

        def holds(value: Any) -> bool:
            return value is expected

    else:

        def holds(value: Any) -> bool:
            return compare_json(cond, value)  # type: ignore[arg-type]

    def check(line: str) -> bool:
        i = line.find(needle)
        if i < 0:
            return False
        if line.rfind(needle) != i:
            return True
        m = value_at(line, i + skip)
        if m is None:
            return False
        value = _token_value(m.group(1))
        return value is MISSING or holds(value)

    return check


# --- generated source ----------------------------------------------------------------------


class _Source:
    """The constants a generated function refers to, each under a generated name."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        self.temporaries = 0

    def constant(self, value: Any) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def temporary(self) -> int:
        self.temporaries += 1
        return self.temporaries


_PY_OPS = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _fetch(selector: Selector, src: _Source) -> str:
    """An expression for the value at `selector` in `doc` (MISSING when it does not resolve)."""
    path = selector.path
    if len(path) == 1 and isinstance(path[0], str):
        return f"doc.get({src.constant(path[0])}, MISSING)"
    return f"resolve(doc, {src.constant(selector)})"


def _condition(expr: Expr, src: _Source) -> str:
    """`expr` as a Python expression over the dict `doc`, true exactly when `_eval_json` is."""
    if isinstance(expr, Logical):
        joiner = " and " if expr.op == "and" else " or "
        return f"({_condition(expr.left, src)}{joiner}{_condition(expr.right, src)})"
    assert isinstance(expr.target, Selector)
    n = src.temporary()
    v, t = f"v{n}", f"t{n}"
    get = f"({v} := {_fetch(expr.target, src)})"
    if isinstance(expr, NotExists):
        return f"({get} is MISSING)"
    if isinstance(expr, NullCheck):
        return f"({get} is None)"
    if isinstance(expr, BoolCheck):
        return f"({get} is {'True' if expr.value else 'False'})"
    want, op = expr.value, expr.op
    if isinstance(want, AnyValue):
        # `= *`: any value node (not null, an object or an array); `!= *` never holds.
        if op != "=":
            return "False"
        return f"(({t} := type({get})) is str or {t} is int or {t} is float or {t} is bool)"
    # The common value types get a direct test; any other value (MISSING included) goes to
    # `compare_json`, the specification's own comparison.
    general = f"({v} is not MISSING and compare({src.constant(expr)}, {v}))"
    if isinstance(want, NumberValue):
        number = f"(({t} := type({get})) is int or {t} is float)"
        test = f"{v} {_PY_OPS[op]} {src.constant(want.number)}"
        if op in _ORDERINGS:
            return f"({number} and {test})"
        return f"({test} if {number} else {general})"
    if isinstance(want, StringValue):
        text = src.constant(want.text)
        if want.prefix_wild and want.suffix_wild:
            found = f"{text} in {v}"
        elif want.prefix_wild:
            found = f"{v}.endswith({text})"
        elif want.suffix_wild:
            found = f"{v}.startswith({text})"
        else:
            found = f"{v} == {text}"
    else:
        assert isinstance(want, RegexValue)
        found = f"{src.constant(want.regex.search)}({v}) is not None"
    test = found if op == "=" else f"not ({found})"
    return f"({test} if type({get}) is str else {general})"


def _precheck(expr: Expr, src: _Source) -> str | None:
    """An expression over `line` that is false only when `expr` is certainly false."""
    if isinstance(expr, Logical):
        left, right = _precheck(expr.left, src), _precheck(expr.right, src)
        if expr.op == "and":
            if left is None or right is None:
                return left or right
            return f"({left} and {right})"
        if left is None or right is None:
            return None
        return f"({left} or {right})"
    check = _leaf_check(expr)
    return None if check is None else f"{src.constant(check)}(line)"


# The pre-check is switched off for a while when it lets most lines through (it would only
# cost time), and sampled again afterwards, as the mix of lines changes.
_SAMPLE, _SKIP = 1024, 16384


def _json_function(
    pattern: JsonPattern, src: _Source, on_match: list[str], on_miss: str, unparsable: list[int]
) -> Callable[[str], Any]:
    """One function of `line`: pre-check, parse, condition, then `on_match` or `on_miss`."""
    condition = _condition(pattern.expr, src)
    precheck = _precheck(pattern.expr, src)
    body: list[str] = []
    if precheck is not None:
        body += [
            "nonlocal left, sampled, passed",
            "if left:",
            "    left -= 1",
            "else:",
            "    sampled += 1",
            f"    if sampled == {_SAMPLE}:",
            f"        if passed * 2 > {_SAMPLE}:",
            f"            left = {_SKIP}",
            "        sampled = passed = 0",
            f"    if not {precheck} and BACKSLASH not in line:",
            f"        return {on_miss}",
            "    passed += 1",
        ]
    body += [
        "try:",
        "    doc, end = scan(line, 0)",
        "except (StopIteration, ValueError, RecursionError):",
        "    end = -1",
        "if end != len(line):",
        "    doc = parse(line)",
        "if type(doc) is dict:",
        f"    if {condition}:",
        *("        " + statement for statement in on_match),
        "elif doc is INVALID:",
        "    unparsable[0] += 1",
        f"return {on_miss}",
    ]
    source = "\n".join(
        [
            "def make():",
            "    left = sampled = passed = 0",
            "",
            "    def run(line):",
            *("        " + statement for statement in body),
            "",
            "    return run",
        ]
    )
    namespace: dict[str, Any] = {
        "MISSING": MISSING,
        "INVALID": INVALID,
        "BACKSLASH": "\\",
        "Match": Match,
        "compare": compare_json,
        "resolve": resolve,
        "numeric": numeric_value,
        "isfinite": math.isfinite,
        "scan": _SCAN,
        "parse": parse_json,
        "unparsable": unparsable,
        **src.constants,
    }
    exec(compile(source, "<compiled filter pattern>", "exec"), namespace)
    run = namespace["make"]()
    run.source = source  # type: ignore[attr-defined]
    return run


# --- entry points ------------------------------------------------------------------------


def _counter(given: list[int] | None) -> list[int]:
    return [0] if given is None else given


def _terms_matcher(pattern: TermPattern) -> Callable[[str], Match | None]:
    if len(pattern.groups) == 1 and all(t.text is not None for t in pattern.groups[0].include):
        group = pattern.groups[0]
        include = tuple(t.text for t in group.include)
        exclude = group.exclude

        def terms(line: str) -> Match | None:
            for text in include:
                if text not in line:  # type: ignore[operator]
                    return None
            for term in exclude:
                if term_found(term, line):
                    return None
            return _TEXT_MATCH

        return terms
    return lambda line: reference_match(pattern, line)


def compile_matcher(
    pattern: Pattern, unparsable: list[int] | None = None
) -> Callable[[str], Match | None]:
    """A function `line -> Match | None` equivalent to `reference_match(pattern, line)`.

    JSON patterns add one to `unparsable[0]` for each line they parsed that was not JSON.
    """
    if isinstance(pattern, MatchAll):
        return lambda line: _TEXT_MATCH
    if isinstance(pattern, TermPattern):
        return _terms_matcher(pattern)
    if isinstance(pattern, JsonPattern):
        return _json_function(
            pattern, _Source(), ["return Match(doc)"], "None", _counter(unparsable)
        )
    return lambda line: reference_match(pattern, line)


def compile_test(pattern: Pattern, unparsable: list[int] | None = None) -> Callable[[str], bool]:
    """A function `line -> bool`: whether `compile_matcher(pattern)` would match."""
    if isinstance(pattern, JsonPattern):
        return _json_function(pattern, _Source(), ["return True"], "False", _counter(unparsable))
    match = compile_matcher(pattern)
    return lambda line: match(line) is not None


def compile_observer(
    pattern: Pattern,
    value: float | Selector | str,
    default: float | None,
    counts: list[int],
    unparsable: list[int] | None = None,
) -> Callable[[str], float | None]:
    """A metric filter's function `line -> observation` (see `MetricFilter.observe`).

    `value` is a constant, a JSON selector (JSON patterns) or a space-delimited field name.
    A matching line adds one to `counts[0]`; one whose value is missing or not a finite
    number contributes None and adds one to `counts[1]`.
    """
    if isinstance(pattern, JsonPattern):
        src = _Source()
        tally = src.constant(counts)
        if isinstance(value, Selector):
            on_match = [
                f"{tally}[0] += 1",
                f"value = {_fetch(value, src)}",
                "if type(value) is float and isfinite(value):",
                "    return value",
                "value = numeric(value)",
                "if value is None:",
                f"    {tally}[1] += 1",
                "return value",
            ]
        else:
            on_match = [f"{tally}[0] += 1", f"return {src.constant(value)}"]
        return _json_function(pattern, src, on_match, src.constant(default), _counter(unparsable))
    match = compile_matcher(pattern, unparsable)

    def observe(line: str) -> float | None:
        found = match(line)
        if found is None:
            return default
        counts[0] += 1
        if not isinstance(value, str):
            return value  # type: ignore[return-value]
        number = numeric_value((found.fields or {}).get(value))
        if number is None:
            counts[1] += 1
        return number

    return observe
