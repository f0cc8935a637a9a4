"""Fault controls of a provider: what `PUT /_faults` sets and how each call is treated.

A provider's business routes pass `Faults.admit` before they run; `/health`, `/_faults` and
`/_stats` never do, so in "gray" mode the health check still says ok while calls hang. In
"outage" mode `/health` drops its connection like every call: the provider is down.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["MODES", "FaultSettings", "Faults", "InvalidFaults", "Verdict"]

MODES = ("ok", "quota", "latency", "error", "outage", "gray")
# A rate left out of a PUT is 1.0 in the mode it belongs to (error: every call fails) and 0
# elsewhere; a quota left out is 10 calls a second.
_MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "error": {"error_rate": 1.0},
    "gray": {"timeout_rate": 1.0},
    "quota": {"quota_per_s": 10.0},
}


class InvalidFaults(ValueError):
    """A `PUT /_faults` body that does not describe faults; the message says which field."""


@dataclass(frozen=True)
class FaultSettings:
    """The faults in force. `latency_ms` delays every call in every mode; `hang_ms` is how
    long a gray call hangs before its connection is closed (past any caller's timeout)."""

    mode: str = "ok"
    latency_ms: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    quota_per_s: float | None = None
    hang_ms: float = 10_000.0

    @classmethod
    def parse(cls, body: Any, base_latency_ms: float = 0.0) -> FaultSettings:
        """Settings from a PUT body; fields left out take their defaults (the provider's own
        latency for `latency_ms`). Raises InvalidFaults naming the field and what it takes."""
        if not isinstance(body, dict):
            raise InvalidFaults('send a JSON object such as {"mode": "ok"}')
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidFaults(
                f"unknown field(s) {sorted(unknown)}: the fields are "
                f"{', '.join(cls.__dataclass_fields__)}"
            )
        mode = body.get("mode", "ok")
        if mode not in MODES:
            raise InvalidFaults(f"mode {mode!r} is not one of {', '.join(MODES)}")
        values: dict[str, Any] = {"mode": mode, "latency_ms": base_latency_ms}
        values.update(_MODE_DEFAULTS.get(mode, {}))
        for name in ("latency_ms", "hang_ms"):
            if name in body:
                values[name] = _number(body[name], name, 0.0, 600_000.0)
        for name in ("error_rate", "timeout_rate"):
            if name in body:
                values[name] = _number(body[name], name, 0.0, 1.0)
        if body.get("quota_per_s") is not None:
            values["quota_per_s"] = _number(body["quota_per_s"], "quota_per_s", 0.1, 1e6)
        elif "quota_per_s" in body:
            values["quota_per_s"] = None
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        """The settings as `GET /_faults` returns them."""
        return asdict(self)


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidFaults(f"{name} must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Verdict:
    """How to treat one call: close the connection unanswered, answer with `status` (and
    `retry_after`), or go on (status None)."""

    close: bool = False
    status: int | None = None
    detail: str = ""
    retry_after: int | None = None


class Faults:
    """The fault settings of one provider process and the quota's token bucket."""

    def __init__(self, base_latency_ms: float = 0.0) -> None:
        self.base_latency_ms = base_latency_ms
        self._lock = threading.Lock()
        self.settings = FaultSettings(latency_ms=base_latency_ms)
        self._tokens = 0.0
        self._refilled = time.monotonic()

    def set(self, body: Any) -> FaultSettings:
        """Replace the settings (InvalidFaults leaves them as they were)."""
        settings = FaultSettings.parse(body, self.base_latency_ms)
        with self._lock:
            self.settings = settings
            self._tokens = settings.quota_per_s or 0.0
            self._refilled = time.monotonic()
        return settings

    def _take_token(self, per_second: float) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(per_second, self._tokens + (now - self._refilled) * per_second)
            self._refilled = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def admit(self) -> Verdict:
        """Apply the faults to one call (sleeping for latency and hangs) and say what to do."""
        s = self.settings
        if s.mode == "outage":
            return Verdict(close=True)
        if s.quota_per_s is not None and not self._take_token(s.quota_per_s):
            return Verdict(status=429, detail="quota exceeded: slow down", retry_after=1)
        if s.mode == "gray" and random.random() < s.timeout_rate:
            time.sleep(s.hang_ms / 1000)
            return Verdict(close=True)
        if s.latency_ms > 0:
            time.sleep(s.latency_ms / 1000)
        if s.mode == "error" and random.random() < s.error_rate:
            return Verdict(status=500, detail="injected error: try again")
        return Verdict()
