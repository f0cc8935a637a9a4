"""Access log lines in the Application Load Balancer format, one per request, so that
`sagaway slo report --alb <log_dir>` and the alarms read the shop's own traffic.

The shop is its own load balancer and target: a request it answered has its handling time as
`target_processing_time`; a request it shed has `-1` there and `-` as the target status, as
an ALB writes for a request it could not send to a target (the SLO report counts it bad).
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO
from urllib.parse import quote

__all__ = ["AccessLog", "Exchange", "alb_line"]

_SAFE_PATH = "/?&=%:@!$'()*+,;~-._"


@dataclass(frozen=True)
class Exchange:
    """What the log says about one request and its answer."""

    started: float  # epoch seconds when the request arrived
    ended: float  # when the answer was sent
    method: str
    host: str
    path: str  # with the query string
    http_version: str
    client: str  # ip:port
    target: str  # ip:port of the shop
    user_agent: str
    status: int
    received_bytes: int
    sent_bytes: int
    shed: bool = False  # answered by the edge without handling


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clean(text: str) -> str:
    """Text for a quoted field: no double quote, no control character, '-' when empty."""
    text = "".join(c for c in text if c >= " " and c != "\x7f").replace('"', "'")
    return text or "-"


def alb_line(x: Exchange) -> str:
    """The ALB access log entry of one exchange (no trailing newline)."""
    if x.shed:
        times, target_status = f"{x.ended - x.started:.6f} -1 -1", "-"
    else:
        times, target_status = f"0.000000 {x.ended - x.started:.6f} 0.000000", str(x.status)
    host = _clean(x.host).replace(" ", "")  # a space would end the URL for log readers
    request = f"{x.method} http://{host}{quote(x.path, safe=_SAFE_PATH)} HTTP/{x.http_version}"
    trace = f"Root=1-{int(x.started):08x}-{secrets.token_hex(12)}"
    return (
        f"http {_stamp(x.ended)} app/sagaway-shop/local {x.client} "
        f"{'-' if x.shed else x.target} {times} {x.status} {target_status} "
        f'{x.received_bytes} {x.sent_bytes} "{_clean(request)}" "{_clean(x.user_agent)}" '
        f'- - - "{trace}" "-" "-" 0 {_stamp(x.started)} "forward" "-" '
        f'"{"-" if not x.shed else "ShedLoad"}" "{"-" if x.shed else x.target}" '
        f'"{target_status}" "-" "-"'
    )


class AccessLog:
    """`<log_dir>/access.log`, appended to, one flushed line per request (safe across the
    threads of one process; lines of one write never interleave)."""

    def __init__(self, log_dir: str) -> None:
        os.makedirs(log_dir, exist_ok=True)
        self.path = os.path.join(log_dir, "access.log")
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def write(self, exchange: Exchange) -> None:
        """Append the exchange's line and flush it."""
        line = alb_line(exchange) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()
