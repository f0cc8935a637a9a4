"""The URL of a PostgreSQL store: libpq's connection parameters plus sagaway's options.

    postgresql://user[:password]@host[:port]/database?schema=shop&pool_size=4

sagaway's own options (`OPTIONS`) are taken out of the query string; every other parameter
goes to libpq as is. See docs/postgres.md for what each option means.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sagaway.errors import ConfigurationError

__all__ = ["OPTIONS", "PostgresSettings", "parse_url"]

DEFAULT_SCHEMA = "sagaway"
DEFAULT_POOL_SIZE = 4
DEFAULT_POOL_TIMEOUT = 10.0
IDLE_IN_TRANSACTION = 10.0
OPTIONS = ("schema", "pool_size", "pool_timeout", "listen")
# libpq settings sagaway chooses unless the URL sets them: fail fast on an unreachable
# server, notice a dead network within about a minute, and say who holds the connections.
LIBPQ_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "application_name": "sagaway",
}
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
_BOOLEANS = {"on": True, "true": True, "1": True, "yes": True}
_BOOLEANS |= {"off": False, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class PostgresSettings:
    """A parsed store URL: what libpq gets, and sagaway's own options."""

    conninfo: str
    where: str  # host:port/database, for messages (never the password)
    schema: str = DEFAULT_SCHEMA
    pool_size: int = DEFAULT_POOL_SIZE
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    listen: bool = True

    @property
    def channel(self) -> str:
        """The NOTIFY channel of this schema (channels are per database, not per schema)."""
        return f"sagaway_wake_{self.schema}"

    @property
    def budget(self) -> int:
        """The most connections one process opens."""
        return self.pool_size + (1 if self.listen else 0)


def _option(url: str, name: str, text: str, convert: Callable[[str], Any], hint: str) -> Any:
    try:
        value = convert(text)
    except (ValueError, KeyError):
        value = None
    if value is None:
        raise ConfigurationError(f"{name}={text!r} in {_redact(url)!r}: {hint}")
    return value


def _positive_int(text: str) -> int | None:
    value = int(text)
    return value if value >= 1 else None


def _positive_float(text: str) -> float | None:
    value = float(text)
    return value if value > 0 else None


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_url(url: str, **overrides: Any) -> PostgresSettings:
    """Split a `postgresql://` URL into libpq's connection string and sagaway's options;
    keyword `overrides` (not None) win over the URL's. Raises ConfigurationError naming the
    bad option and what it accepts."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in OPTIONS}
    ours.update({key: str(value) for key, value in overrides.items() if value is not None})
    unknown = set(overrides) - set(OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown PostgreSQL store option(s) {sorted(unknown)}: sagaway's are "
            f"{', '.join(OPTIONS)}"
        )
    # libpq decodes %XX but not "+": spaces (as in `options=-c a=b`) must stay %20.
    rest = urlencode([(k, v) for k, v in query if k not in OPTIONS], quote_via=quote)
    try:
        params = conninfo_to_dict(urlunsplit(parts._replace(query=rest)))
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(
            f"{_redact(url)!r} is not a PostgreSQL URL libpq accepts ({str(exc).strip()}): "
            f"sagaway's options are {', '.join(OPTIONS)}; any other query parameter must be "
            "a libpq connection parameter"
        ) from None
    schema = ours.get("schema", DEFAULT_SCHEMA)
    if not _SCHEMA.match(schema) or schema.startswith("pg_"):
        raise ConfigurationError(
            f"schema={schema!r} in {_redact(url)!r}: use lowercase letters, digits and _, "
            "at most 48 characters, not starting with a digit or pg_"
        )
    pool_size = _option(
        url, "pool_size", ours.get("pool_size", str(DEFAULT_POOL_SIZE)), _positive_int,
        "give the most pooled connections one process may open, an integer >= 1",
    )  # fmt: skip
    pool_timeout = _option(
        url, "pool_timeout", ours.get("pool_timeout", str(DEFAULT_POOL_TIMEOUT)),
        _positive_float, "give the seconds to wait for a free connection, a number > 0",
    )  # fmt: skip
    listen = _option(
        url, "listen", ours.get("listen", "on"), lambda t: _BOOLEANS[t.lower()], "use on or off"
    )
    for key, value in LIBPQ_DEFAULTS.items():
        params.setdefault(key, value)
    # Our settings first: a later -c in the URL's own `options` wins over ours.
    session = (
        f"-c search_path={schema} "
        f"-c idle_in_transaction_session_timeout={int(IDLE_IN_TRANSACTION * 1000)}"
    )
    params["options"] = f"{session} {params['options']}" if params.get("options") else session
    host = params.get("host") or "the local socket"
    where = f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user')}"
    return PostgresSettings(
        conninfo=make_conninfo("", **params),
        where=where,
        schema=schema,
        pool_size=pool_size,
        pool_timeout=pool_timeout,
        listen=listen,
    )
