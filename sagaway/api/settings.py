"""What `create_app` and `sagaway serve` are configured with, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ApiSettings"]


@dataclass(frozen=True)
class ApiSettings:
    """Options of the API and dashboard; every one has a working default.

    `slo_spec` (a slo.yaml) and `alb_logs` (files or folders of ALB access logs) feed the SLO
    views; a report is computed at most every `slo_refresh` seconds. `alarms` is an
    alarms.yaml whose engine-metric alarms the alarm views evaluate. `secure_cookies` marks
    the session cookie `Secure` (set it behind TLS). Browser sessions last `session_hours`.
    A pending or waiting run due for more than `overdue_after` seconds with no worker taking
    it counts as stuck.
    """

    slo_spec: str | None = None
    alb_logs: tuple[str, ...] = ()
    slo_refresh: float = 60.0
    alarms: str | None = None
    secure_cookies: bool = False
    session_hours: float = 12.0
    overdue_after: float = 60.0
