"""Calls from the shop's steps to its providers, with the errors the engine acts on: a
connection failure, a timeout or a 5xx is transient (retried; it counts for the breaker), a
429 is a `RateLimited` refusal that parks the step until `Retry-After`, and any other 4xx is
`Permanent` (no retry helps)."""

from __future__ import annotations

from typing import Any

try:
    import httpx
except ImportError:  # pragma: no cover - the wheel test runs it without extras
    raise ImportError(
        "the shop calls its providers with httpx, which is not installed: "
        "pip install 'sagaway[shop]'"
    ) from None

from sagaway import Permanent
from sagaway.errors import Rejected

__all__ = ["ProviderClient", "ProviderRefused", "ProviderUnavailable"]


class ProviderUnavailable(ConnectionError):
    """The provider did not answer, answered too late, or answered with a 5xx."""


class ProviderRefused(Permanent):
    """The provider answered with a 4xx other than 429: `status` and its `detail`. Permanent:
    the step fails without retries."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class ProviderClient:
    """A keep-alive HTTP client for one provider at `base_url`; `timeout` per call."""

    def __init__(self, name: str, base_url: str, timeout: float = 3.0) -> None:
        self.name, self.base_url = name, base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(1.0, timeout)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    def call(
        self, method: str, path: str, body: Any = None, key: str | None = None
    ) -> dict[str, Any]:
        """The JSON answer of a 2xx; raises as the module docstring says."""
        headers = {"Idempotency-Key": key} if key else {}
        where = f"{self.name} {method} {path}"
        try:
            answer = self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None
        status = answer.status_code
        if status < 300:
            result: dict[str, Any] = answer.json()
            return result
        detail = _detail(answer)
        if status == 429:
            wait = float(answer.headers.get("Retry-After") or 1)
            raise Rejected(f"{where}: 429 {detail}", name=self.name, retry_after=wait)
        if status >= 500:
            raise ProviderUnavailable(f"{where}: {status} {detail}")
        raise ProviderRefused(status, f"{where}: {detail}")

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail", answer.text[:200]))
    except ValueError:
        return answer.text[:200]
