"""Metric filters: turn log lines into metric observations with CloudWatch's filter patterns.

```python
errors = MetricFilter("api-5xx", '{ $.status >= 500 && $.path = "/api/*" }', default=0)
latency = MetricFilter("api-latency", "{ $.latency = * }", value="$.latency")
errors.observe('{"status": 503, "path": "/api/cart"}')   # -> 1.0
errors.observe('{"status": 200, "path": "/api/cart"}')   # -> 0.0 (the default)
```

The syntax is documented in docs/alarms.md; `FilterPattern` parses it once (raising
`FilterPatternError` with the column of the mistake) and matches with a compiled fast path.
"""

from __future__ import annotations

import re

from sagaway.observe.filters._compile import compile_matcher, compile_observer, compile_test
from sagaway.observe.filters._match import Match, reference_match
from sagaway.observe.filters._syntax import (
    DelimitedPattern,
    FilterPatternError,
    JsonPattern,
    MatchAll,
    Pattern,
    Selector,
    TermPattern,
    parse_pattern,
)

__all__ = ["FilterPattern", "FilterPatternError", "Match", "MetricFilter"]

_SELECTOR_VALUE = re.compile(r"\$((?:\.[A-Za-z0-9_\-@]+|\[\d+\])+)\Z")
_SELECTOR_STEP = re.compile(r"\.([A-Za-z0-9_\-@]+)|\[(\d+)\]")
_FIELD_VALUE = re.compile(r"\$([A-Za-z0-9_\-]+)\Z")


class FilterPattern:
    """A parsed and compiled filter pattern.

    Raises `FilterPatternError` (a ValueError with `.column`) when `text` is malformed.
    Matching never raises: a line that is not what the pattern expects does not match.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.ast: Pattern = parse_pattern(text)
        self._unparsable = [0]
        self._match = compile_matcher(self.ast, self._unparsable)
        self._test = compile_test(self.ast, self._unparsable)

    @property
    def kind(self) -> str:
        """ "all", "terms", "json" or "delimited"."""
        if isinstance(self.ast, MatchAll):
            return "all"
        if isinstance(self.ast, TermPattern):
            return "terms"
        return "json" if isinstance(self.ast, JsonPattern) else "delimited"

    @property
    def unparsable(self) -> int:
        """JSON patterns: lines this pattern parsed that were not valid JSON.

        A lower bound on the malformed lines it saw: a line the raw-text pre-check rules out
        is not parsed, so whether it was valid JSON is not known.
        """
        return self._unparsable[0]

    def match(self, line: str) -> Match | None:
        """The match (with the JSON object or named fields), or None."""
        return self._match(line)

    def matches(self, line: str) -> bool:
        """Whether `line` matches."""
        return self._test(line)

    def reference(self, line: str) -> Match | None:
        """The same answer as `match`, by the straightforward evaluator (for tests)."""
        return reference_match(self.ast, line)

    def __repr__(self) -> str:
        return f"FilterPattern({self.text!r})"


class MetricFilter:
    """A named filter producing one observation per log line.

    `value` is what a matching line contributes: a number (default 1), a JSON selector such
    as "$.latency" (JSON patterns) or a column such as "$bytes" / "$7" (space-delimited
    patterns). `default`, when set, is what a non-matching line contributes (CloudWatch's
    default value); when None a non-matching line contributes nothing. A matching line whose
    value is missing or not numeric contributes nothing and is counted in `value_errors`.
    Raises ValueError when `value` does not fit the pattern.
    """

    def __init__(
        self,
        name: str,
        pattern: FilterPattern | str,
        value: float | str = 1.0,
        default: float | None = None,
    ) -> None:
        self.name = name
        self.pattern = pattern if isinstance(pattern, FilterPattern) else FilterPattern(pattern)
        self.default = None if default is None else float(default)
        self._constant: float | None = None
        self._selector: Selector | None = None
        self._field: str | None = None
        self._configure_value(value)
        self._counts = [0, 0]  # matched, value errors
        source = self._selector or self._field
        self._observe = compile_observer(
            self.pattern.ast,
            self._constant if source is None else source,
            self.default,
            self._counts,
            self.pattern._unparsable,
        )

    @property
    def matched(self) -> int:
        """Lines that matched the pattern."""
        return self._counts[0]

    @property
    def value_errors(self) -> int:
        """Matching lines whose value was missing or not a finite number."""
        return self._counts[1]

    def _configure_value(self, value: float | str) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self._constant = float(value)
            return
        text = str(value).strip()
        try:
            self._constant = float(text)
            return
        except ValueError:
            pass
        selector = _SELECTOR_VALUE.match(text)
        if selector:
            if self.pattern.kind != "json":
                raise ValueError(
                    f"metric filter {self.name!r}: value {text!r} reads a JSON field, "
                    "so the pattern must be a JSON pattern such as { $.latency = * }"
                )
            steps = tuple(
                key if key else int(index)
                for key, index in _SELECTOR_STEP.findall(selector.group(1))
            )
            self._selector = Selector(steps, text)
            return
        field = _FIELD_VALUE.match(text)
        if field:
            ast = self.pattern.ast
            if not isinstance(ast, DelimitedPattern):
                raise ValueError(
                    f"metric filter {self.name!r}: value {text!r} reads a column, so the "
                    "pattern must be space-delimited such as [ip, user, ..., bytes]"
                )
            name = field.group(1)
            if name not in ast.names and not name.isdigit():
                raise ValueError(
                    f"metric filter {self.name!r}: value {text!r} names no column of "
                    f"{self.pattern.text!r}; columns are {', '.join(ast.names)}"
                )
            self._field = name if not name.isdigit() else text
            return
        raise ValueError(
            f"metric filter {self.name!r}: value {text!r} must be a number, a JSON "
            "selector such as $.latency, or a column such as $bytes"
        )

    @property
    def value_spec(self) -> str:
        """The value as configured: a number, a selector or a column."""
        if self._selector is not None:
            return self._selector.text
        if self._field is not None:
            return self._field if self._field.startswith("$") else f"${self._field}"
        return f"{self._constant:g}"

    def observe(self, line: str) -> float | None:
        """The observation `line` contributes, or None for none. Never raises."""
        return self._observe(line)

    def __repr__(self) -> str:
        return f"MetricFilter({self.name!r}, {self.pattern.text!r}, value={self.value_spec!r})"
