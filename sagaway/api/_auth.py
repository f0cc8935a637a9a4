"""Authentication and roles for every request: a bearer token, or a browser session opened
by signing in with one (an HttpOnly, SameSite=Strict cookie whose forms carry a CSRF token).
Only hashes of tokens and cookies reach the store; neither is ever logged."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sagaway.api._problems import Problem
from sagaway.api.access import Role, digest
from sagaway.store.access import TokenRecord
from sagaway.store.base import Store

__all__ = ["SESSION_COOKIE", "Principal", "authenticate", "open_session", "require", "same_token"]

SESSION_COOKIE = "sagaway_session"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Principal:
    """Who is asking: the token, its role, and (for a browser session) the session's cookie
    hash and CSRF token."""

    token: TokenRecord
    role: Role
    session: str | None = None
    csrf: str | None = None

    def may(self, needed: Role) -> bool:
        """Whether this principal's role allows what `needed` may do."""
        return self.role.allows(needed)


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of two secrets (False when either is missing)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def authenticate(store: Store, headers: Any, cookies: Any) -> Principal | None:
    """The principal of a request (bearer token first, then the session cookie), or None."""
    header = headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Problem(401, "the Authorization header must be 'Bearer TOKEN'")
        token = store.token_by_hash(digest(value.strip()))
        if token is None:
            raise Problem(401, "this token is not known or was revoked: ask an admin for a new one")
        return Principal(token, Role.parse(token.role))
    cookie = cookies.get(SESSION_COOKIE)
    if cookie:
        hashed = digest(cookie)
        session = store.session(hashed, time.time())
        if session is not None:
            return Principal(session.token, Role.parse(session.token.role), hashed, session.csrf)
    return None


def require(principal: Principal | None, needed: Role, method: str, csrf: str | None) -> Principal:
    """`principal` if it may do what `needed` may; for a browser session's change, only with
    its CSRF token. Raises Problem 401 or 403."""
    if principal is None:
        raise Problem(
            401,
            "no credentials: send 'Authorization: Bearer TOKEN' (create one with `sagaway "
            "tokens create`) or sign in",
        )
    if not principal.may(needed):
        raise Problem(403, f"the {principal.role} role may not do this: it needs {needed} or above")
    if principal.session is not None and method in UNSAFE and not same_token(csrf, principal.csrf):
        raise Problem(
            403,
            "missing or wrong CSRF token: send the form's csrf field (or the X-CSRF-Token "
            "header) from a page of this session",
        )
    return principal


def open_session(store: Store, token: TokenRecord, hours: float) -> tuple[str, str, float]:
    """Start a browser session for `token`: (cookie value, CSRF token, expiry)."""
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    now = time.time()
    expires = now + hours * 3600
    store.create_session(digest(cookie), token.id, csrf, now, expires)
    return cookie, csrf, expires
