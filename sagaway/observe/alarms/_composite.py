"""Composite alarms (CloudWatch's rule language) and `AlarmSet`, which checks a whole set.

```python
CompositeAlarm("checkout-down", 'ALARM(checkout-5xx) AND NOT ALARM("deploy in progress")')
```

A rule combines `ALARM(name)`, `OK(name)`, `INSUFFICIENT_DATA(name)`, `TRUE` and `FALSE` with
`NOT`, `AND`, `OR` (binding in that order) and parentheses; names are bare or double-quoted.
A composite is in ALARM when its rule is true, OK otherwise.

A child can be anything with a name that yields an `AlarmState`: a `MetricAlarm`, another
composite, or an external source such as an SLO burn-rate alert (the `AlarmSource`
protocol, or just a name whose state is supplied at evaluation time). `AlarmSet` rejects
unknown names and cycles when the set is assembled.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sagaway.observe.alarms._metric_alarm import AlarmDefinitionError, AlarmState, MetricAlarm

__all__ = ["AlarmSet", "AlarmSource", "CompositeAlarm", "RuleSyntaxError"]


class RuleSyntaxError(AlarmDefinitionError):
    """A composite rule that cannot be parsed; `column` (1-based) points at the mistake."""

    def __init__(self, message: str, rule: str, column: int) -> None:
        self.message, self.rule, self.column = message, rule, column
        caret = " " * (column - 1) + "^"
        super().__init__(f"rule error at column {column}: {message}\n  {rule}\n  {caret}")


@runtime_checkable
class AlarmSource(Protocol):
    """Anything named that can say its state at a time: e.g. an SLO burn-rate alert."""

    name: str

    def state_at(self, timestamp: float) -> AlarmState:
        """The source's state for the evaluation at `timestamp` (seconds since the epoch)."""
        ...


# --- rule AST: tuples keep it small; ("state", name, AlarmState) | ("const", bool) |
# ("not", node) | ("and", a, b) | ("or", a, b)
Rule = tuple

_TOKEN = re.compile(
    r'\s*(?:(?P<punct>[()])|"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s()"]+)|(?P<bad>"))'
)
_FUNCTIONS = {s.value: s for s in AlarmState}


def _tokens(rule: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(rule):
        m = _TOKEN.match(rule, pos)
        if m is None:
            break  # only trailing whitespace is left
        start = m.start(m.lastgroup) if m.lastgroup else pos
        if m.lastgroup == "bad":
            raise RuleSyntaxError("unterminated quoted name: add the closing '\"'", rule, start + 1)
        if m.lastgroup == "quoted":
            text = re.sub(r"\\(.)", r"\1", m.group("quoted"))
            out.append(("name", text, start))
        elif m.lastgroup == "punct":
            out.append((m.group("punct"), m.group("punct"), start))
        else:
            out.append(("word", m.group("bare"), start))
        pos = m.end()
    return out


class _RuleParser:
    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.tokens = _tokens(rule)
        self.i = 0

    def error(self, message: str) -> RuleSyntaxError:
        pos = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.rule.rstrip())
        return RuleSyntaxError(message, self.rule, pos + 1)

    def peek_word(self, *words: str) -> bool:
        if self.i < len(self.tokens) and self.tokens[self.i][0] == "word":
            return self.tokens[self.i][1].upper() in words
        return False

    def here(self) -> str:
        return repr(self.tokens[self.i][1]) if self.i < len(self.tokens) else "the end"

    def parse(self) -> Rule:
        if not self.tokens:
            raise self.error("a rule needs at least one term, such as ALARM(name) or TRUE")
        node = self.parse_or()
        if self.i < len(self.tokens):
            raise self.error(f"expected AND, OR or the end of the rule, got {self.here()}")
        return node

    def parse_or(self) -> Rule:
        node = self.parse_and()
        while self.peek_word("OR"):
            self.i += 1
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self) -> Rule:
        node = self.parse_not()
        while self.peek_word("AND"):
            self.i += 1
            node = ("and", node, self.parse_not())
        return node

    def parse_not(self) -> Rule:
        if self.peek_word("NOT"):
            self.i += 1
            return ("not", self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> Rule:
        if self.i >= len(self.tokens):
            raise self.error(
                "expected ALARM(...), OK(...), INSUFFICIENT_DATA(...), TRUE, FALSE or '('"
            )
        kind, text, _ = self.tokens[self.i]
        if kind == "(":
            opened = self.i
            self.i += 1
            node = self.parse_or()
            if self.i >= len(self.tokens) or self.tokens[self.i][0] != ")":
                column = self.tokens[opened][2] + 1
                raise self.error(f"expected ')' to close the '(' at column {column}")
            self.i += 1
            return node
        if kind == "word" and text.upper() in ("TRUE", "FALSE"):
            self.i += 1
            return ("const", text.upper() == "TRUE")
        if kind == "word" and text.upper() in _FUNCTIONS:
            state = _FUNCTIONS[text.upper()]
            self.i += 1
            if self.i >= len(self.tokens) or self.tokens[self.i][0] != "(":
                raise self.error(f"expected '(' after {text}")
            self.i += 1
            if self.i >= len(self.tokens) or self.tokens[self.i][0] not in ("name", "word"):
                raise self.error(f"expected an alarm name inside {text}(...), got {self.here()}")
            name = self.tokens[self.i][1]
            self.i += 1
            if self.i >= len(self.tokens) or self.tokens[self.i][0] != ")":
                raise self.error(
                    f"expected ')' after the alarm name {name!r} (quote names with spaces)"
                )
            self.i += 1
            return ("state", name, state)
        raise self.error(
            f"expected ALARM(...), OK(...), INSUFFICIENT_DATA(...), TRUE, FALSE, NOT or '(', "
            f"got {self.here()}"
        )


def _names(node: Rule) -> Iterable[str]:
    if node[0] == "state":
        yield node[1]
    elif node[0] == "not":
        yield from _names(node[1])
    elif node[0] in ("and", "or"):
        yield from _names(node[1])
        yield from _names(node[2])


def _truth(node: Rule, states: Mapping[str, AlarmState], owner: str) -> bool:
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind == "state":
        try:
            return states[node[1]] == node[2]
        except KeyError:
            raise AlarmDefinitionError(
                f"composite {owner!r} needs the state of {node[1]!r}, which was not supplied"
            ) from None
    if kind == "not":
        return not _truth(node[1], states, owner)
    if kind == "and":
        return _truth(node[1], states, owner) and _truth(node[2], states, owner)
    return _truth(node[1], states, owner) or _truth(node[2], states, owner)


@dataclass(frozen=True)
class CompositeAlarm:
    """An alarm whose state is a rule over other alarms' states.

    Raises `RuleSyntaxError` (with the column) for a malformed rule and
    `AlarmDefinitionError` for a rule that names the composite itself.
    """

    name: str
    rule: str
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise AlarmDefinitionError("a composite alarm needs a non-empty name")
        tree = _RuleParser(self.rule).parse()
        object.__setattr__(self, "_tree", tree)
        children = tuple(dict.fromkeys(_names(tree)))
        if self.name in children:
            raise AlarmDefinitionError(
                f"composite {self.name!r} refers to itself in its rule {self.rule!r}"
            )
        object.__setattr__(self, "_children", children)

    @property
    def children(self) -> tuple[str, ...]:
        """Names the rule refers to, in order of first appearance."""
        return self._children  # type: ignore[attr-defined]

    def evaluate(self, states: Mapping[str, AlarmState]) -> AlarmState:
        """ALARM if the rule holds for `states`, else OK.

        Raises AlarmDefinitionError if a child's state is missing from `states`.
        """
        holds = _truth(self._tree, states, self.name)  # type: ignore[attr-defined]
        return AlarmState.ALARM if holds else AlarmState.OK


class AlarmSet:
    """Metric alarms, composites and external sources checked together, evaluated in order.

    Assembling the set raises AlarmDefinitionError for a duplicate name, a composite that
    names an alarm the set does not have, or composites that depend on each other in a
    cycle (the message shows the cycle). `sources` are external children: `AlarmSource`
    objects, or bare names whose states are passed to `evaluate`.
    """

    def __init__(
        self,
        alarms: Iterable[MetricAlarm] = (),
        composites: Iterable[CompositeAlarm] = (),
        sources: Iterable[AlarmSource | str] = (),
    ) -> None:
        self.alarms = {a.name: a for a in self._unique(alarms, "alarm", set())}
        taken = set(self.alarms)
        self.sources = {
            (s if isinstance(s, str) else s.name): s for s in self._unique(sources, "source", taken)
        }
        taken |= set(self.sources)
        self.composites = {c.name: c for c in self._unique(composites, "composite", taken)}
        known = taken | set(self.composites)
        for composite in self.composites.values():
            for child in composite.children:
                if child not in known:
                    close = difflib.get_close_matches(child, sorted(known), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise AlarmDefinitionError(
                        f"composite {composite.name!r} refers to {child!r}, which is not an "
                        f"alarm, composite or source of this set{hint}"
                    )
        self.order = self._topological_order()

    @staticmethod
    def _unique(items: Iterable, kind: str, taken: set[str]) -> list:
        out = []
        for item in items:
            name = item if isinstance(item, str) else item.name
            if name in taken:
                raise AlarmDefinitionError(f"{kind} name {name!r} is used more than once")
            taken.add(name)
            out.append(item)
        return out

    def _topological_order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = [*path[path.index(name) :], name]
                raise AlarmDefinitionError(
                    "composite alarms form a cycle: "
                    + " -> ".join(cycle)
                    + "; change one rule so it no longer depends on the others"
                )
            state[name] = 1
            for child in self.composites[name].children:
                if child in self.composites:
                    visit(child, [*path, name])
            state[name] = 2
            order.append(name)

        for name in self.composites:
            visit(name, [])
        return order

    @property
    def names(self) -> list[str]:
        """Every name in the set: alarms, sources, then composites in evaluation order."""
        return [*self.alarms, *self.sources, *self.order]

    def evaluate(
        self, states: Mapping[str, AlarmState], at: float | None = None
    ) -> dict[str, AlarmState]:
        """Every composite's state, given the alarms' (and sources') `states`.

        Sources missing from `states` are asked (`AlarmSource.state_at(at)`) when they are
        objects, or count as INSUFFICIENT_DATA when they are bare names. Returns the merged
        mapping of every name to its state.
        """
        merged = dict(states)
        for name, source in self.sources.items():
            if name not in merged:
                if isinstance(source, str) or at is None:
                    merged[name] = AlarmState.INSUFFICIENT_DATA
                else:
                    merged[name] = source.state_at(at)
        for name in self.order:
            merged[name] = self.composites[name].evaluate(merged)
        return merged
