"""Errors as RFC 9457 problem details: `application/problem+json` bodies with a type, a
title, the status and a detail that says what to do."""

from __future__ import annotations

from typing import Any

from sagaway.errors import (
    ConfigurationError,
    IdempotencyConflict,
    InvalidInput,
    InvalidRunState,
    RunNotFound,
    SagawayError,
    SerializationError,
    StoreUnavailable,
    UnknownSaga,
)

__all__ = ["PROBLEM_TYPES", "Problem", "problem_body", "problem_for"]

PROBLEM_TYPES = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    422: "invalid-request",
    500: "internal-error",
    501: "not-available",
    503: "store-unavailable",
}
TITLES = {
    400: "Bad request",
    401: "Sign in with a token",
    403: "Your role may not do this",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflicts with the run's state",
    422: "Invalid request",
    500: "Internal error",
    501: "Not available in this sagaway",
    503: "The store is unavailable",
}


class Problem(Exception):
    """An HTTP error with an RFC 9457 body; `extra` adds members (e.g. `errors`)."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def problem_body(status: int, detail: str, instance: str | None = None, **extra: Any) -> dict:
    """The JSON body of a problem."""
    body: dict[str, Any] = {
        "type": f"https://sagaway.dev/problems/{PROBLEM_TYPES.get(status, 'error')}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_for(error: SagawayError) -> Problem:
    """The problem a sagaway error becomes."""
    if isinstance(error, RunNotFound | UnknownSaga):
        return Problem(404, str(error))
    if isinstance(error, InvalidRunState | IdempotencyConflict):
        return Problem(409, str(error))
    if isinstance(error, ConfigurationError | SerializationError | InvalidInput):
        return Problem(422, str(error))
    if isinstance(error, StoreUnavailable):
        return Problem(503, str(error))
    return Problem(500, f"{type(error).__name__}: {error}")
