"""CloudWatch filter-pattern syntax: the AST and its parser.

Four kinds of pattern, told apart by their first character:

- terms: ``ERROR -DEBUG``, ``?ERROR ?WARN``, ``"exact phrase"``, ``%regex%``;
- JSON: ``{ $.status >= 500 && $.path = "/api/*" }``, ``{ $.user IS NULL }``,
  ``{ $.trace NOT EXISTS }``, ``{ $.ok IS TRUE }``;
- space-delimited: ``[ip, user, ..., status = 5*, bytes > 1000]``;
- empty (or ``""``): matches every line.

`parse_pattern` returns a `Pattern` node or raises `FilterPatternError`, which carries the
1-based column of the mistake and renders the pattern with a caret under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sagaway.errors import ObserveError

__all__ = [
    "AnyValue",
    "BoolCheck",
    "Comparison",
    "Condition",
    "DelimitedPattern",
    "Expr",
    "FieldRef",
    "FilterPatternError",
    "JsonPattern",
    "Logical",
    "MatchAll",
    "NotExists",
    "NullCheck",
    "NumberValue",
    "Pattern",
    "RegexValue",
    "Selector",
    "StringValue",
    "Term",
    "TermGroup",
    "TermPattern",
    "Value",
    "parse_pattern",
]


class FilterPatternError(ObserveError, ValueError):
    """A filter pattern that cannot be parsed; `column` (1-based) points at the mistake."""

    def __init__(self, message: str, pattern: str, column: int) -> None:
        self.message = message
        self.pattern = pattern
        self.column = column
        caret = " " * (column - 1) + "^"
        super().__init__(
            f"filter pattern error at column {column}: {message}\n  {pattern}\n  {caret}"
        )


# --- values ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StringValue:
    """A string to compare with; a leading or trailing `*` is a wildcard, an inner one is not."""

    text: str
    prefix_wild: bool = False
    suffix_wild: bool = False

    def matches(self, candidate: str) -> bool:
        """Whether `candidate` equals this string, wildcards applied."""
        if self.prefix_wild and self.suffix_wild:
            return self.text in candidate
        if self.prefix_wild:
            return candidate.endswith(self.text)
        if self.suffix_wild:
            return candidate.startswith(self.text)
        return candidate == self.text


@dataclass(frozen=True)
class NumberValue:
    """A number literal; `text` keeps its spelling so `=` can also match the same string."""

    number: float | int
    text: str


@dataclass(frozen=True)
class RegexValue:
    """A `%regex%` value, searched anywhere in the candidate."""

    regex: re.Pattern[str]


@dataclass(frozen=True)
class AnyValue:
    """A lone `*`: any value that exists (a string, number or boolean)."""


Value = StringValue | NumberValue | RegexValue | AnyValue


# --- targets and expressions ------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """A JSON path such as `$.users[0].id`: keys (str) and array indexes (int) from the root."""

    path: tuple[str | int, ...]
    text: str


@dataclass(frozen=True)
class FieldRef:
    """A named column of a space-delimited pattern."""

    name: str


@dataclass(frozen=True)
class Comparison:
    """`target op value` with op one of = != < <= > >=."""

    target: Selector | FieldRef
    op: str
    value: Value


@dataclass(frozen=True)
class NullCheck:
    """`$.x IS NULL`: the field exists and is JSON null."""

    target: Selector


@dataclass(frozen=True)
class NotExists:
    """`$.x NOT EXISTS`: the path does not resolve."""

    target: Selector


@dataclass(frozen=True)
class BoolCheck:
    """`$.x IS TRUE` / `$.x IS FALSE`."""

    target: Selector
    value: bool


@dataclass(frozen=True)
class Logical:
    """`left && right` (op "and") or `left || right` (op "or")."""

    op: str
    left: Expr
    right: Expr


Condition = Comparison | NullCheck | NotExists | BoolCheck
Expr = Condition | Logical


# --- patterns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchAll:
    """The empty pattern: every line matches."""


@dataclass(frozen=True)
class Term:
    """A literal text (searched case-sensitively anywhere in the line) or a regex."""

    text: str | None = None
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True)
class TermGroup:
    """All `include` terms present and no `exclude` term present."""

    include: tuple[Term, ...] = ()
    exclude: tuple[Term, ...] = ()


@dataclass(frozen=True)
class TermPattern:
    """Any of the groups matches. A `?term` starts a new group (CloudWatch's OR)."""

    groups: tuple[TermGroup, ...]


@dataclass(frozen=True)
class JsonPattern:
    """`{ expression }`, matched against lines that are JSON objects."""

    expr: Expr


@dataclass(frozen=True)
class DelimitedPattern:
    """`[a, b, ..., c]`: named columns ("" for an unnamed one), at most one `...`, and an
    optional condition over the named columns."""

    names: tuple[str, ...]
    ellipsis: int | None
    condition: Expr | None
    referenced: frozenset[str] = field(default_factory=frozenset)


Pattern = MatchAll | TermPattern | JsonPattern | DelimitedPattern


# --- parser -----------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
_NAME = re.compile(r"[A-Za-z0-9_\-@]+")
_COLUMN_NAME = re.compile(r"[A-Za-z0-9_\-]+")
_INDEX = re.compile(r"\[(\d+)\]")
_OPERATORS = ("!=", "<=", ">=", "==", "=", "<", ">")
_BARE_STOP = set(' \t\r\n(){}[],&|"')


def _number(text: str) -> float | int:
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return float(text)


def _string_value(text: str) -> Value:
    if text == "*":
        return AnyValue()
    prefix = text.startswith("*")
    suffix = len(text) > 1 and text.endswith("*")
    core = text[1 if prefix else 0 : len(text) - 1 if suffix else len(text)]
    return StringValue(core, prefix, suffix)


class _Scanner:
    """Cursor over the pattern text; every error names the column it stopped at."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> FilterPatternError:
        return FilterPatternError(message, self.text, (self.pos if pos is None else pos) + 1)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def peek(self, literal: str) -> bool:
        self.skip_space()
        return self.text.startswith(literal, self.pos)

    def accept(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str, what: str) -> None:
        if not self.accept(literal):
            raise self.error(f"expected {what}, got {self.describe_here()}")

    def describe_here(self) -> str:
        self.skip_space()
        if self.pos >= len(self.text):
            return "the end of the pattern"
        return repr(self.text[self.pos :].split()[0][:12])

    def keyword(self, word: str) -> bool:
        """Accept `word` case-insensitively when it stands alone (not a prefix of a name)."""
        self.skip_space()
        end = self.pos + len(word)
        if self.text[self.pos : end].upper() != word:
            return False
        if end < len(self.text) and (self.text[end].isalnum() or self.text[end] == "_"):
            return False
        self.pos = end
        return True

    def quoted(self) -> str:
        """A double-quoted string at the cursor; backslash escapes `"` and `\\`."""
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                out.append(nxt if nxt in '"\\' else ch + nxt)
                self.pos += 2
                continue
            if ch == '"':
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise self.error("unterminated string: add the closing '\"'", start)

    def regex(self) -> re.Pattern[str]:
        """A `%regex%` at the cursor."""
        start = self.pos
        end = self.text.find("%", start + 1)
        if end < 0:
            raise self.error("unterminated regular expression: add the closing '%'", start)
        source = self.text[start + 1 : end]
        if not source:
            raise self.error("empty regular expression '%%'", start)
        try:
            compiled = re.compile(source)
        except re.error as exc:
            column = start + 1 + (exc.pos or 0)
            raise self.error(f"invalid regular expression: {exc.msg}", column) from None
        self.pos = end + 1
        return compiled

    def bare(self, stop: set[str] = _BARE_STOP) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stop:
            if self.text.startswith(("&&", "||"), self.pos):
                break
            self.pos += 1
        return self.text[start : self.pos]

    def operator(self) -> str | None:
        self.skip_space()
        for op in _OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return "=" if op == "==" else op
        return None

    def value(self, op: str) -> Value:
        """The value after a comparison operator; ordering operators need a number."""
        self.skip_space()
        start = self.pos
        if self.pos >= len(self.text):
            raise self.error(f"expected a value after '{op}', got the end of the pattern")
        ch = self.text[self.pos]
        if ch == '"':
            text = self.quoted()
            if op in ("<", "<=", ">", ">="):
                raise self.error(f"'{op}' compares numbers; {text!r} is quoted text", start)
            return _string_value(text)
        if ch == "%":
            if op not in ("=", "!="):
                raise self.error(f"a regular expression can only follow = or !=, not '{op}'", start)
            return RegexValue(self.regex())
        text = self.bare()
        if not text:
            raise self.error(f"expected a value after '{op}', got {self.describe_here()}")
        if _NUMBER.match(text):
            return NumberValue(_number(text), text)
        if op in ("<", "<=", ">", ">="):
            raise self.error(f"'{op}' compares numbers; {text!r} is not a number", start)
        return _string_value(text)


def parse_pattern(text: str) -> Pattern:
    """Parse a CloudWatch filter pattern into its AST; raise `FilterPatternError` if malformed."""
    stripped = text.strip()
    if not stripped or stripped == '""':
        return MatchAll()
    scanner = _Scanner(text)
    scanner.skip_space()
    if stripped[0] == "{":
        return _parse_json(scanner)
    if stripped[0] == "[":
        return _parse_delimited(scanner)
    return _parse_terms(scanner)


# --- terms ------------------------------------------------------------------------------


def _parse_terms(s: _Scanner) -> TermPattern:
    groups: list[TermGroup] = []
    include: list[Term] = []
    exclude: list[Term] = []
    started = False
    while not s.at_end():
        start = s.pos
        ch = s.text[s.pos]
        prefix = ""
        if ch in "?-":
            prefix = ch
            s.pos += 1
            s.skip_space()
            if s.pos >= len(s.text):
                raise s.error(f"expected a term after '{prefix}'", start)
            ch = s.text[s.pos]
        if ch in "{[" and s.pos > 0:
            raise s.error(
                f"'{ch}' starts a JSON or space-delimited pattern only at the beginning; "
                f'put the text in double quotes to search for it, e.g. "{ch}"'
            )
        if ch == '"':
            term = Term(text=s.quoted())
        elif ch == "%":
            term = Term(regex=s.regex())
        else:
            term = Term(text=s.bare(set(' \t\r\n"')))
        if term.text == "" and term.regex is None:
            raise s.error('empty term: "" matches everything only on its own', start)
        if prefix == "?":
            if started:
                groups.append(TermGroup(tuple(include), tuple(exclude)))
            include, exclude = [], []
        started = True
        (exclude if prefix == "-" else include).append(term)
    groups.append(TermGroup(tuple(include), tuple(exclude)))
    return TermPattern(tuple(groups))


# --- JSON -------------------------------------------------------------------------------


def _parse_json(s: _Scanner) -> JsonPattern:
    s.expect("{", "'{'")
    if s.peek("}"):
        raise s.error("empty JSON pattern: write a condition such as { $.status >= 500 }")
    expr = _parse_or(s, _json_condition)
    s.expect("}", "'&&', '||' or the closing '}'")
    if not s.at_end():
        raise s.error("unexpected text after the closing '}'")
    return JsonPattern(expr)


def _parse_or(s: _Scanner, condition) -> Expr:
    left = _parse_and(s, condition)
    while s.accept("||"):
        left = Logical("or", left, _parse_and(s, condition))
    return left


def _parse_and(s: _Scanner, condition) -> Expr:
    left = _parse_primary(s, condition)
    while s.accept("&&"):
        left = Logical("and", left, _parse_primary(s, condition))
    return left


def _parse_primary(s: _Scanner, condition) -> Expr:
    if s.peek("("):
        start = s.pos
        s.pos += 1
        inner = _parse_or(s, condition)
        if not s.accept(")"):
            raise s.error(f"expected ')' to close the '(' at column {start + 1}")
        return inner
    return condition(s)


def _selector(s: _Scanner) -> Selector:
    s.skip_space()
    start = s.pos
    if not s.text.startswith("$", s.pos):
        raise s.error(
            f"expected a selector starting with '$.' (such as $.status), got {s.describe_here()}"
        )
    s.pos += 1
    path: list[str | int] = []
    while s.pos < len(s.text) and s.text[s.pos] in ".[":
        if s.text[s.pos] == ".":
            s.pos += 1
            match = _NAME.match(s.text, s.pos)
            if not match:
                raise s.error("expected a property name after '.'")
            path.append(match.group())
            s.pos = match.end()
        else:
            match = _INDEX.match(s.text, s.pos)
            if not match:
                raise s.error("expected an array index such as [0]")
            if not path:
                raise s.error("an array index must follow a property, as in $.items[0]")
            path.append(int(match.group(1)))
            s.pos = match.end()
    if not path:
        raise s.error("a selector names a property: write $.name, not $ alone", start)
    return Selector(tuple(path), s.text[start : s.pos])


def _json_condition(s: _Scanner) -> Condition:
    target = _selector(s)
    if s.keyword("IS"):
        if s.keyword("NULL"):
            return NullCheck(target)
        if s.keyword("TRUE"):
            return BoolCheck(target, True)
        if s.keyword("FALSE"):
            return BoolCheck(target, False)
        raise s.error(f"expected NULL, TRUE or FALSE after IS, got {s.describe_here()}")
    if s.keyword("NOT"):
        if s.keyword("EXISTS"):
            return NotExists(target)
        raise s.error(f"expected EXISTS after NOT, got {s.describe_here()}")
    op = s.operator()
    if op is None:
        raise s.error(
            "expected a comparison (= != < <= > >=), IS NULL, IS TRUE, IS FALSE or NOT EXISTS "
            f"after {target.text}, got {s.describe_here()}"
        )
    return Comparison(target, op, s.value(op))


# --- space-delimited --------------------------------------------------------------------


def _parse_delimited(s: _Scanner) -> DelimitedPattern:
    s.expect("[", "'['")
    names: list[str] = []
    ellipsis: int | None = None
    conditions: list[Expr] = []
    refs: list[tuple[str, int]] = []
    while True:
        s.skip_space()
        start = s.pos
        if names and (s.peek(",") or s.peek("]")):
            names.append("")  # an empty position is an unnamed column, as CloudWatch reads it
        elif s.accept("...") or s.accept("\u2026"):
            if ellipsis is not None:
                raise s.error("only one '...' is allowed in a space-delimited pattern", start)
            ellipsis = len(names)
            names.append("...")
        else:
            match = _COLUMN_NAME.match(s.text, s.pos)
            if not match:
                raise s.error(
                    f"expected a column name (letters, digits, '_' or '-') or '...', "
                    f"got {s.describe_here()}"
                )
            name = match.group()
            if name in names and name:
                raise s.error(f"column name {name!r} is used twice", start)
            names.append(name)
            s.pos = match.end()
            s.skip_space()
            if s.pos < len(s.text) and s.text[s.pos] not in ",]":
                s.pos = start
                conditions.append(_parse_or(s, _delimited_condition(refs)))
        if s.accept(","):
            continue
        if s.accept("]"):
            break
        raise s.error(f"expected ',' or ']', got {s.describe_here()}")
    if not s.at_end():
        raise s.error("unexpected text after the closing ']'")
    for name, pos in refs:
        if name not in names:
            raise s.error(
                f"condition refers to {name!r}, which is not a column of the pattern", pos
            )
    condition: Expr | None = None
    for cond in conditions:
        condition = cond if condition is None else Logical("and", condition, cond)
    return DelimitedPattern(tuple(names), ellipsis, condition, frozenset(n for n, _ in refs))


def _delimited_condition(refs: list[tuple[str, int]]):
    def condition(s: _Scanner) -> Condition:
        s.skip_space()
        start = s.pos
        match = _COLUMN_NAME.match(s.text, s.pos)
        if not match:
            raise s.error(f"expected a column name, got {s.describe_here()}")
        s.pos = match.end()
        refs.append((match.group(), start))
        op = s.operator()
        if op is None:
            raise s.error(
                f"expected a comparison (= != < <= > >=) after {match.group()!r}, "
                f"got {s.describe_here()}"
            )
        return Comparison(FieldRef(match.group()), op, s.value(op))

    return condition
