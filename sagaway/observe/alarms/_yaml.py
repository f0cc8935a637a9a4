"""YAML with line numbers, for `alarms.yaml`, whose errors must say where.

`load_yaml` keeps, for every mapping, its line and the line of each key; `Entry` gives typed
access to one mapping, expands `${VAR}` / `${VAR:-default}` from the environment, and makes
errors that name the file, the line, the entry and what to write instead.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

import yaml

from sagaway.errors import ConfigurationError, ObserveError

__all__ = ["AlarmConfigurationError", "Entry", "LineMap", "expand", "load_yaml"]


class AlarmConfigurationError(ObserveError, ConfigurationError):
    """An `alarms.yaml` that cannot be used; the message names the file, line and entry.
    A `ConfigurationError`, hence also a ValueError."""


class LineMap(dict):
    """A YAML mapping that remembers its line, and the line of each of its keys."""

    line = 0
    key_lines: dict[Any, int] = {}


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> LineMap:
    loader.flatten_mapping(node)
    out = LineMap(loader.construct_pairs(node, deep=True))
    out.line = node.start_mark.line + 1
    out.key_lines = {
        key.value: key.start_mark.line + 1
        for key, _ in node.value
        if isinstance(key, yaml.ScalarNode)
    }
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Entry:
    """Typed access to one mapping of the file, with errors that say where."""

    def __init__(self, data: Any, where: str, source: str, allowed: tuple[str, ...]) -> None:
        self.source, self.where = source, where
        self.line = getattr(data, "line", 0)
        self.data = data
        if not isinstance(data, dict):
            raise self.error(f"expected a mapping (key: value lines), got {type(data).__name__}")
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.error(f"unknown key {key!r}{hint} (allowed: {', '.join(allowed)})", key)

    def error(self, message: str, key: str | None = None) -> AlarmConfigurationError:
        """An error at `key`'s line when given (and known), else at the entry's line."""
        number = getattr(self.data, "key_lines", {}).get(key, self.line) if key else self.line
        line = f":{number}" if number else ""
        return AlarmConfigurationError(f"{self.source}{line}: {self.where}: {message}")

    def get(self, key: str, kind: type | tuple, default: Any = None, required: bool = False):
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.error(f"'{key}' is required")
            return default
        value = expand(self.data[key], self, key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(f"'{key}' must be {kind_name(kinds)}, got {value!r}", key)
        if not isinstance(value, kinds):
            raise self.error(f"'{key}' must be {kind_name(kinds)}, got {value!r}", key)
        return value

    def names(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, (list, str), default=list(default))
        items = [value] if isinstance(value, str) else value
        if not all(isinstance(v, str) for v in items):
            raise self.error(f"'{key}' must be a list of names")
        return tuple(items)


def kind_name(kinds: tuple) -> str:
    names = {
        str: "text",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def expand(value: Any, entry: Entry, key: str | None = None) -> Any:
    """`value` with `${VAR}` and `${VAR:-default}` replaced from the environment; an unset
    variable without a default is an AlarmConfigurationError at `key`'s line."""
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise entry.error(f"environment variable {name} is not set (used as ${{{name}}})", key)

    return _ENV.sub(substitute, value)


def load_yaml(text: str, source: str) -> Any:
    """Parse `text`; mappings come back as `LineMap`s. Raises AlarmConfigurationError with the
    line and column of a syntax error."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise AlarmConfigurationError(f"{source}{where}: not valid YAML: {problem}") from None
