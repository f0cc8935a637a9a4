"""What a filter pattern means: value semantics and the reference matcher.

`reference_match` walks the AST for every line, parsing every JSON line with `json.loads`.
It is the specification, kept short so it can be read against the documentation; the fast
path used in production (_compile.py) is tested to give the same answers. The value
semantics here (`compare_json`, `resolve`, `numeric_value`) are shared by both.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from sagaway.observe.filters._syntax import (
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

__all__ = [
    "MISSING",
    "Match",
    "compare_json",
    "numeric_value",
    "reference_match",
    "resolve",
    "split_fields",
    "term_found",
]

MISSING = object()
"""What `resolve` returns when a selector does not resolve."""
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


def compare_json(cond: Comparison, value: Any) -> bool:
    """Whether `cond` holds for a resolved JSON value (never `MISSING`)."""
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
    """The value at `selector` in `document`, or `MISSING`."""
    node = document
    for step in selector.path:
        if isinstance(step, str):
            if not isinstance(node, dict) or step not in node:
                return MISSING
            node = node[step]
        else:
            if not isinstance(node, list) or step >= len(node):
                return MISSING
            node = node[step]
    return node


def numeric_value(raw: Any) -> float | None:
    """A metric value: a finite number, or a string that reads as one; else None."""
    if isinstance(raw, bool):
        return None
    try:
        if isinstance(raw, int | float | str):
            number = float(raw)
        else:
            return None
    except (ValueError, OverflowError):  # OverflowError: an integer beyond float's range
        return None
    return number if math.isfinite(number) else None


def _eval_json(expr: Expr, document: dict) -> bool:
    if isinstance(expr, Logical):
        if expr.op == "and":
            return _eval_json(expr.left, document) and _eval_json(expr.right, document)
        return _eval_json(expr.left, document) or _eval_json(expr.right, document)
    value = resolve(document, expr.target)  # type: ignore[arg-type]
    if isinstance(expr, NotExists):
        return value is MISSING
    if value is MISSING:
        return False
    if isinstance(expr, NullCheck):
        return value is None
    if isinstance(expr, BoolCheck):
        return value is expr.value
    return compare_json(expr, value)


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


def term_found(term: Term, line: str) -> bool:
    """Whether a literal term occurs in `line` (case-sensitively) or a regex term is found."""
    if term.regex is not None:
        return term.regex.search(line) is not None
    return term.text in line  # type: ignore[operator]


def _parse_object(line: str) -> dict | None:
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):  # too deeply nested to parse is not JSON either
        return None
    return document if isinstance(document, dict) else None


# --- the reference matcher ------------------------------------------------------------------


def reference_match(pattern: Pattern, line: str) -> Match | None:
    """Match `line` by walking the AST, parsing JSON every time. The specification."""
    if isinstance(pattern, MatchAll):
        return _TEXT_MATCH
    if isinstance(pattern, TermPattern):
        for group in pattern.groups:
            if all(term_found(t, line) for t in group.include) and not any(
                term_found(t, line) for t in group.exclude
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
