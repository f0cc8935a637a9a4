"""Who may use the HTTP API, and what they changed: API tokens (only their hashes), browser
sessions opened with a token, and the audit log. The contract is `AccessStore`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["AccessStore", "AuditRecord", "SessionRecord", "TokenRecord"]


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: its id, a name for people, its role and when it was created
    and revoked (None while it works). The token itself is never stored."""

    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class SessionRecord:
    """A signed-in browser: the token it signed in with and the form token (CSRF) every form
    of that session must carry."""

    token: TokenRecord
    csrf: str
    expires_at: float


@dataclass(frozen=True)
class AuditRecord:
    """One change made through the API: when, by whom (`actor`: token name and id), what
    (`action`), to which run, with what `detail` (JSON text) and `outcome` ("ok", or why it
    was refused)."""

    id: int
    at: float
    actor: str
    action: str
    run_id: str | None
    detail: str
    outcome: str


class AccessStore(ABC):
    """Tokens, sessions and the audit log of the HTTP API."""

    @abstractmethod
    def create_token(self, token_id: str, name: str, role: str, digest: str, now: float) -> None:
        """Keep a new token's hash with its name and role."""

    @abstractmethod
    def tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones included, oldest first."""

    @abstractmethod
    def token_by_hash(self, digest: str) -> TokenRecord | None:
        """The token with this hash if it has not been revoked, else None."""

    @abstractmethod
    def revoke_token(self, token_id: str, now: float) -> TokenRecord | None:
        """Revoke a token and end its sessions at once; None when no token has this id.
        Revoking twice keeps the first time."""

    @abstractmethod
    def create_session(
        self, digest: str, token_id: str, csrf: str, now: float, expires_at: float
    ) -> None:
        """Keep a browser session (the hash of its cookie); expired sessions are dropped."""

    @abstractmethod
    def session(self, digest: str, now: float) -> SessionRecord | None:
        """The live session with this cookie hash, None when it expired, was ended or its
        token was revoked."""

    @abstractmethod
    def end_session(self, digest: str) -> None:
        """Sign a browser out."""

    @abstractmethod
    def record_audit(
        self, at: float, actor: str, action: str, run_id: str | None, detail: str, outcome: str
    ) -> int:
        """Append to the audit log; return the entry's id."""

    @abstractmethod
    def audit(
        self, run_id: str | None = None, before: int | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """Audit entries, newest first: of one run, and/or older than the entry `before`."""
