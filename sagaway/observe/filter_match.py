"""Matching log lines against a parsed filter pattern.

Two matchers with one meaning:

- `reference_match` walks the AST for every line: JSON lines are always parsed. It is the
  specification, kept short so it can be read against the documentation.
- `compile_matcher` builds the fast path used in production. For JSON patterns it first runs a
  *rejecting pre-check* on the raw line and only parses the lines that may match.

Why the pre-check is sound: in a line with no backslash, a JSON string cannot contain a `"`,
so every occurrence of `"key"` followed by `:` is a real object key and the token after the
colon is its raw value. If the last key of a selector occurs nowhere, the selector cannot
resolve; if it occurs exactly once, that occurrence is the only value the selector could
resolve to, so a comparison that fails on it fails for the line. Any other case (a backslash,
a repeated key, an array index, an unusual value token) falls back to parsing. Tests check
the two matchers agree on generated lines and patterns.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from typing import Any

from sagaway.observe.filter_syntax import (
    AnyValue,
    BoolCheck,
    Comparison,
    DelimitedPattern,
    Expr,
    FieldRef,
    JsonPattern,
    Logical,
    MatchAll,
    NotExists,
    NullCheck,
    NumberValue,
    Pattern,
    RegexValue,
    Selector,
    Term,
    TermPattern,
)

__all__ = ["Match", "compile_matcher", "reference_match", "split_fields"]

_MISSING = object()
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
# A space-delimited field: [bracketed], "quoted" (backslash escapes) or a run of non-spaces.
_FIELD = re.compile(r'\[([^\]]*)\]|"((?:[^"\\]|\\.)*)"|(\S+)')


class Match:
    """What a matching line offers for metric values: its JSON object or its named fields."""

    __slots__ = ("document", "fields")

    def __init__(self, document: Any = None, fields: dict[str, str] | None = None) -> None:
        self.document = document
        self.fields = fields


_TEXT_MATCH = Match()


# --- shared value semantics ---------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _order(op: str, left: float, right: float) -> bool:
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "=":
        return left == right
    return left != right


def _compare_json(cond: Comparison, value: Any) -> bool:
    """A comparison against a resolved JSON value (never `_MISSING`)."""
    if value is None or isinstance(value, dict | list):
        return False  # only value nodes (string, number, boolean) compare
    want = cond.value
    if isinstance(want, AnyValue):
        return cond.op == "="
    if isinstance(want, NumberValue):
        if _is_number(value):
            return _order(cond.op, value, want.number)
        if cond.op in ("=", "!="):
            return (_as_text(value) == want.text) == (cond.op == "=")
        return False
    text = _as_text(value)
    if isinstance(want, RegexValue):
        found = want.regex.search(text) is not None
    else:
        found = want.matches(text)
    return found == (cond.op == "=")


def _compare_field(cond: Comparison, text: str) -> bool:
    """A comparison against a space-delimited field's text."""
    want = cond.value
    if isinstance(want, AnyValue):
        return cond.op == "="
    if isinstance(want, NumberValue):
        if _NUMBER_TEXT.match(text):
            return _order(cond.op, float(text), float(want.number))
        if cond.op in ("=", "!="):
            return (text == want.text) == (cond.op == "=")
        return False
    if isinstance(want, RegexValue):
        found = want.regex.search(text) is not None
    else:
        found = want.matches(text)
    return found == (cond.op == "=")


def resolve(document: Any, selector: Selector) -> Any:
    """The value at `selector` in `document`, or the module's missing marker."""
    node = document
    for step in selector.path:
        if isinstance(step, str):
            if not isinstance(node, dict) or step not in node:
                return _MISSING
            node = node[step]
        else:
            if not isinstance(node, list) or step >= len(node):
                return _MISSING
            node = node[step]
    return node


def _eval_json(expr: Expr, document: dict) -> bool:
    if isinstance(expr, Logical):
        if expr.op == "and":
            return _eval_json(expr.left, document) and _eval_json(expr.right, document)
        return _eval_json(expr.left, document) or _eval_json(expr.right, document)
    value = resolve(document, expr.target)  # type: ignore[arg-type]
    if isinstance(expr, NotExists):
        return value is _MISSING
    if value is _MISSING:
        return False
    if isinstance(expr, NullCheck):
        return value is None
    if isinstance(expr, BoolCheck):
        return value is expr.value
    return _compare_json(expr, value)


def _eval_fields(expr: Expr, fields: dict[str, str]) -> bool:
    if isinstance(expr, Logical):
        if expr.op == "and":
            return _eval_fields(expr.left, fields) and _eval_fields(expr.right, fields)
        return _eval_fields(expr.left, fields) or _eval_fields(expr.right, fields)
    assert isinstance(expr, Comparison) and isinstance(expr.target, FieldRef)
    return _compare_field(expr, fields[expr.target.name])


def split_fields(line: str) -> list[str]:
    """Split a line into space-delimited fields; `[...]` and `"..."` each make one field."""
    out = []
    for bracketed, quoted, plain in _FIELD.findall(line):
        if plain:
            out.append(plain)
        elif quoted or not bracketed:
            out.append(quoted.replace('\\"', '"'))
        else:
            out.append(bracketed)
    return out


def _fields(pattern: DelimitedPattern, line: str) -> dict[str, str] | None:
    values = split_fields(line)
    names = pattern.names
    if pattern.ellipsis is None:
        if len(values) != len(names):
            return None
        named = dict(zip(names, values, strict=True))
    else:
        before = pattern.ellipsis
        after = len(names) - before - 1
        if len(values) < before + after:
            return None
        named = dict(zip(names[:before], values[:before], strict=True))
        if after:
            named.update(zip(names[before + 1 :], values[len(values) - after :], strict=True))
    named.pop("", None)
    for i, value in enumerate(values, 1):
        named[f"${i}"] = value
    return named


def _term_found(term: Term, line: str) -> bool:
    if term.regex is not None:
        return term.regex.search(line) is not None
    return term.text in line  # type: ignore[operator]


def _parse_object(line: str) -> dict | None:
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


# --- the reference matcher ------------------------------------------------------------------


def reference_match(pattern: Pattern, line: str) -> Match | None:
    """Match `line` by walking the AST, parsing JSON every time. The specification."""
    if isinstance(pattern, MatchAll):
        return _TEXT_MATCH
    if isinstance(pattern, TermPattern):
        for group in pattern.groups:
            if all(_term_found(t, line) for t in group.include) and not any(
                _term_found(t, line) for t in group.exclude
            ):
                return _TEXT_MATCH
        return None
    if isinstance(pattern, JsonPattern):
        document = _parse_object(line)
        if document is None or not _eval_json(pattern.expr, document):
            return None
        return Match(document=document)
    fields = _fields(pattern, line)
    if fields is None:
        return None
    if pattern.condition is not None and not _eval_fields(pattern.condition, fields):
        return None
    return Match(fields=fields)


# --- the compiled matcher -------------------------------------------------------------------

# After `"key"`: a colon, then a JSON number, a string without escapes, a literal, or any
# other character (the start of a container, or of something that is not JSON).
_VALUE_AFTER_KEY = re.compile(
    r'\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|"[^"]*"|true|false|null|.)'
)
_NUMBER_AFTER_KEY = re.compile(r"\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")
_ORDERINGS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_LITERALS = {"true": True, "false": False, "null": None}

Check = Callable[[str], bool]


def _token_value(token: str) -> Any:
    if token in _LITERALS:
        return _LITERALS[token]
    if token[0] == '"':
        return token[1:-1]
    if token != "-" and (token[0] == "-" or token[0].isdigit()):
        # The same conversions json.loads applies to a number token.
        return float(token) if any(c in token for c in ".eE") else int(token)
    return _MISSING


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
            # No number after `"key":` means no such key, or a value that never orders.
            m = number_at(line, i + skip)
            if m is None:
                return False
            token = m.group(1)
            verdict = seen.get(token)
            if verdict is None:
                # float() is exact below 16 characters; longer tokens convert as json does.
                number = float(token) if len(token) < 16 else _token_value(token)
                verdict = compare(number, bound)
                if len(seen) < 4096:  # status codes and the like repeat: remember a few
                    seen[token] = verdict
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
            return _compare_json(cond, value)  # type: ignore[arg-type]

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
        return value is _MISSING or holds(value)

    return check


def _precheck(expr: Expr) -> Check | None:
    if isinstance(expr, Logical):
        left, right = _precheck(expr.left), _precheck(expr.right)
        if expr.op == "and":
            if left is None or right is None:
                return left or right
            return lambda line: left(line) and right(line)
        if left is None or right is None:
            return None
        return lambda line: left(line) or right(line)
    return _leaf_check(expr)


def _compile_expr(expr: Expr) -> Callable[[dict], bool]:
    """`expr` as nested closures over a parsed document; the same answers as `_eval_json`."""
    if isinstance(expr, Logical):
        left, right = _compile_expr(expr.left), _compile_expr(expr.right)
        if expr.op == "and":
            return lambda doc: left(doc) and right(doc)
        return lambda doc: left(doc) or right(doc)
    if not isinstance(expr, Comparison):
        return lambda doc: _eval_json(expr, doc)
    selector = expr.target
    assert isinstance(selector, Selector)
    if len(selector.path) == 1 and isinstance(selector.path[0], str):
        key = selector.path[0]

        def get(doc: dict) -> Any:
            return doc.get(key, _MISSING)

    else:

        def get(doc: dict) -> Any:
            return resolve(doc, selector)

    want = expr.value
    if isinstance(want, NumberValue) and expr.op in _ORDERINGS:
        compare, bound = _ORDERINGS[expr.op], want.number

        def ordering(doc: dict) -> bool:
            value = get(doc)
            kind = type(value)
            return (kind is int or kind is float) and compare(value, bound)

        return ordering

    def comparison(doc: dict) -> bool:
        value = get(doc)
        return value is not _MISSING and _compare_json(expr, value)

    return comparison


# The pre-check is skipped for a while when it lets most lines through (it would only cost
# time); it is sampled again afterwards, as the mix of lines changes.
_SAMPLE, _SKIP = 1024, 16384


def _json_matcher(pattern: JsonPattern) -> Callable[[str], Match | None]:
    """JSON pattern with a rejecting pre-check; counts lines that failed to parse."""
    evaluate = _compile_expr(pattern.expr)
    check = _precheck(pattern.expr)
    loads = json.loads
    unparsable = [0]
    # sampled lines, lines the pre-check let through, lines left to skip the pre-check
    window = [0, 0, 0]

    def match(line: str) -> Match | None:
        if check is not None:
            if window[2]:
                window[2] -= 1
            else:
                window[0] += 1
                if window[0] >= _SAMPLE:
                    if window[1] * 2 > window[0]:
                        window[2] = _SKIP
                    window[0] = window[1] = 0
                if not check(line) and "\\" not in line:
                    return None
                window[1] += 1
        try:
            document = loads(line)
        except ValueError:
            unparsable[0] += 1
            return None
        if type(document) is dict and evaluate(document):
            return Match(document=document)
        return None

    match.unparsable = unparsable  # type: ignore[attr-defined]
    return match


def compile_matcher(pattern: Pattern) -> Callable[[str], Match | None]:
    """A function `line -> Match | None` equivalent to `reference_match(pattern, line)`."""
    if isinstance(pattern, MatchAll):
        return lambda line: _TEXT_MATCH
    if isinstance(pattern, TermPattern):
        if len(pattern.groups) == 1 and all(t.text is not None for t in pattern.groups[0].include):
            group = pattern.groups[0]
            include = tuple(t.text for t in group.include)
            exclude = group.exclude

            def terms(line: str) -> Match | None:
                for text in include:
                    if text not in line:
                        return None
                for term in exclude:
                    if _term_found(term, line):
                        return None
                return _TEXT_MATCH

            return terms
        return lambda line: reference_match(pattern, line)
    if isinstance(pattern, JsonPattern):
        return _json_matcher(pattern)
    return lambda line: reference_match(pattern, line)
