"""Who may do what through the API: roles, tokens (created here, only their hash stored),
and the audit log's actor names. Needs nothing beyond the store, so the command line can
manage tokens without the API's dependencies."""

from __future__ import annotations

import getpass
import hashlib
import json
import secrets
import socket
import time
from enum import StrEnum
from typing import Any

from sagaway.errors import ConfigurationError
from sagaway.store.access import TokenRecord
from sagaway.store.base import Store

__all__ = [
    "TOKEN_PREFIX",
    "Role",
    "actor_name",
    "audit",
    "cli_actor",
    "digest",
    "issue_token",
    "revoke_token",
]

TOKEN_PREFIX = "sgw_"


class Role(StrEnum):
    """What a token may do: `viewer` reads; `operator` also signals, cancels, redrives and
    forks runs and redrives dead letters; `admin` also manages tokens."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may."""
        order = list(Role)
        return order.index(self) >= order.index(needed)

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named `text`. Raises ConfigurationError naming the roles."""
        try:
            return cls(text)
        except ValueError:
            raise ConfigurationError(
                f"no role {text!r}: use one of {', '.join(r.value for r in cls)}"
            ) from None


def digest(secret: str) -> str:
    """What the store keeps of a token or session cookie: its SHA-256 (they are 256 random
    bits, so no salt or slow hash is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    store: Store, role: Role | str, name: str | None, actor: str
) -> tuple[TokenRecord, str]:
    """Create a token; return its record and the token itself, which is shown once and
    never stored. The creation is audited as done by `actor`."""
    role = Role.parse(str(role))
    token_id = secrets.token_hex(6)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    label = name or f"{role.value}-{token_id}"
    now = time.time()
    store.create_token(token_id, label, role.value, digest(token), now)
    audit(store, actor, "token.create", None, {"token": token_id, "name": label, "role": role})
    return TokenRecord(token_id, label, role.value, now), token


def revoke_token(store: Store, token_id: str, actor: str) -> TokenRecord | None:
    """Revoke a token (its sessions end at once); None when no token has that id. Audited."""
    record = store.revoke_token(token_id, time.time())
    outcome = "ok" if record is not None else "refused: no such token"
    audit(store, actor, "token.revoke", None, {"token": token_id}, outcome)
    return record


def actor_name(token: TokenRecord) -> str:
    """How the audit log names the holder of a token."""
    return f"{token.name} ({token.id})"


def cli_actor() -> str:
    """How the audit log names a person at the command line."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def audit(
    store: Store,
    actor: str,
    action: str,
    run_id: str | None,
    detail: dict[str, Any],
    outcome: str = "ok",
) -> None:
    """Append one change to the audit log."""
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
    store.record_audit(time.time(), actor, action, run_id, text, outcome)
