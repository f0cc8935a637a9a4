"""Notifiers: where alarm notifications go.

- `WebhookNotifier`: POSTs the notification as JSON (`Notification.to_dict()` plus
  `source` and `version`), with an `Idempotency-Key` header so receivers can drop retries.
- `SlackNotifier`: a Slack-compatible incoming-webhook payload (`text` + `attachments`).
- `TicketNotifier`: a tracker webhook: `open` on ALARM, `comment` on reminders, `resolve`
  on recovery, with a `dedup_key` naming the incident.
- `EmailNotifier`: plain-text mail over SMTP (optionally STARTTLS or SSL, and login).

`send` raises `DeliveryError` (retryable unless `permanent`); retries, backoff and failure
reporting are the `Dispatcher`'s job. `describe()` never shows secrets; `secrets()` lists
what must be scrubbed from anything logged.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

from sagaway.errors import ObserveError
from sagaway.observe._time import format_duration, iso_time
from sagaway.observe.alarms._incident import Notification

__all__ = [
    "DeliveryError",
    "EmailNotifier",
    "Notifier",
    "SlackNotifier",
    "TicketNotifier",
    "WebhookNotifier",
    "safe_url",
    "url_secrets",
]


class DeliveryError(ObserveError):
    """A notification was not delivered; `permanent` means retrying cannot help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def safe_url(url: str) -> str:
    """`scheme://host:port/…`: the parts of a URL that never carry a secret."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else "/"
    return f"{parts.scheme}://{host}{port}{rest}"


def url_secrets(url: str) -> list[str]:
    """The pieces of `url` that may be secret: path, query, fragment, user info, the URL."""
    parts = urlsplit(url)
    found = [
        url,
        parts.path,
        parts.query,
        parts.fragment,
        parts.password or "",
        parts.username or "",
    ]
    return [s for s in found if s and s != "/"]


class Notifier:
    """Base class: a named destination. Subclasses implement `send` and `describe`."""

    kind = "notifier"

    def __init__(self, name: str, kinds: frozenset[str] | None = None) -> None:
        self.name = name
        self.kinds = kinds

    def accepts(self, notification: Notification) -> bool:
        """Whether this notifier wants `notification` (by kind)."""
        return self.kinds is None or notification.kind in self.kinds

    def send(self, notification: Notification) -> None:
        """Deliver once; raise DeliveryError on failure."""
        raise NotImplementedError

    def describe(self) -> str:
        """A description safe to log."""
        return f"{self.kind} {self.name!r}"

    def secrets(self) -> list[str]:
        """Strings that must never appear in logs or reports."""
        return []


def _post_json(url: str, payload: Any, headers: Mapping[str, str], timeout: float) -> None:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "sagaway-alarms", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        # 408/425/429 and 5xx are worth retrying; other 4xx mean the request itself is wrong.
        retry = exc.code in (408, 425, 429) or exc.code >= 500
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}", permanent=not retry) from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"cannot reach the endpoint: {exc.reason}") from None
    except (OSError, TimeoutError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None


class WebhookNotifier(Notifier):
    """POST each notification as JSON to `url` (with optional extra `headers`)."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        kinds: frozenset[str] | None = None,
    ) -> None:
        super().__init__(name, kinds)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Say what is wrong without echoing the URL, which may carry a token.
            problem = (
                f"its scheme is {parts.scheme!r}" if parts.scheme else "it has no http(s):// scheme"
            )
            if parts.scheme in ("http", "https"):
                problem = "it has no host"
            raise ValueError(
                f"{self.kind} {name!r}: url must be an http(s) URL such as "
                f"https://hooks.example.com/…, but {problem}"
            )
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = timeout

    def payload(self, notification: Notification) -> Any:
        """The JSON body for `notification`."""
        return {"source": "sagaway", "version": 1, **notification.to_dict()}

    def send(self, notification: Notification) -> None:
        headers = {"Idempotency-Key": notification.id, **self.headers}
        _post_json(self.url, self.payload(notification), headers, self.timeout)

    def describe(self) -> str:
        return f"{self.kind} {self.name!r} ({safe_url(self.url)})"

    def secrets(self) -> list[str]:
        return url_secrets(self.url) + [v for v in self.headers.values() if len(v) >= 4]


_COLORS = {
    "ALARM": "#d0021b",
    "RENOTIFY": "#d0021b",
    "OK": "#2e7d32",
    "INSUFFICIENT_DATA": "#9e9e9e",
    "FLAPPING": "#f5a623",
    "NOTIFIER_FAILING": "#f5a623",
}
_ICONS = {"ALARM": ":rotating_light:", "RENOTIFY": ":rotating_light:", "OK": ":white_check_mark:"}


class SlackNotifier(WebhookNotifier):
    """A Slack-compatible incoming webhook (also accepted by Mattermost and Rocket.Chat)."""

    kind = "slack"

    def payload(self, notification: Notification) -> Any:
        n = notification
        fields = [
            {"title": "State", "value": n.state.value, "short": True},
            {"title": "At", "value": iso_time(n.at), "short": True},
        ]
        if n.duration is not None:
            fields.append(
                {"title": "Incident", "value": format_duration(n.duration), "short": True}
            )
        icon = _ICONS.get(n.kind, ":warning:")
        return {
            "text": f"{icon} {n.summary}",
            "attachments": [
                {
                    "color": _COLORS.get(n.kind, "#9e9e9e"),
                    "fallback": n.summary,
                    "fields": fields,
                    "footer": f"sagaway alarms · {n.id}",
                    "ts": int(n.at),
                }
            ],
        }


class TicketNotifier(WebhookNotifier):
    """A tracker webhook: one ticket per incident, opened, commented on and resolved."""

    kind = "ticket"

    def __init__(
        self,
        name: str,
        url: str,
        project: str = "",
        labels: tuple[str, ...] = (),
        severity: str = "high",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        kinds: frozenset[str] | None = None,
    ) -> None:
        super().__init__(name, url, headers, timeout, kinds)
        self.project, self.labels, self.severity = project, tuple(labels), severity

    def accepts(self, notification: Notification) -> bool:
        # Tickets follow incidents; a quiet OK or a notice outside an incident is no ticket.
        if notification.incident_started is None:
            return False
        return super().accepts(notification)

    def payload(self, notification: Notification) -> Any:
        n = notification
        action = {"ALARM": "open", "OK": "resolve"}.get(n.kind, "comment")
        started = iso_time(n.incident_started) if n.incident_started is not None else ""
        return {
            "action": action,
            "dedup_key": f"{n.alarm}@{started}",
            "title": f"{n.alarm} in ALARM since {started}",
            "body": n.summary,
            "project": self.project,
            "labels": list(self.labels),
            "severity": self.severity,
            "notification": n.to_dict(),
        }


class EmailNotifier(Notifier):
    """Plain-text mail through an SMTP server."""

    kind = "email"

    def __init__(
        self,
        name: str,
        host: str,
        sender: str,
        recipients: list[str],
        port: int = 25,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_ssl: bool = False,
        timeout: float = 10.0,
        kinds: frozenset[str] | None = None,
    ) -> None:
        super().__init__(name, kinds)
        if not recipients:
            raise ValueError(f"email {name!r}: give at least one recipient in 'to'")
        self.host, self.port, self.sender = host, port, sender
        self.recipients = list(recipients)
        self.username, self.password = username, password
        self.starttls, self.use_ssl, self.timeout = starttls, use_ssl, timeout

    def message(self, notification: Notification) -> EmailMessage:
        """The mail for `notification`."""
        n = notification
        mail = EmailMessage()
        mail["Subject"] = n.summary if len(n.summary) < 150 else n.summary[:147] + "..."
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = formatdate(n.at, usegmt=True)
        mail["Message-ID"] = make_msgid("sagaway-alarms")
        mail["X-Sagaway-Notification"] = n.id
        lines = [n.summary, "", f"Alarm:    {n.alarm}", f"State:    {n.state.value}"]
        if n.previous is not None:
            lines.append(f"Previous: {n.previous.value}")
        lines.append(f"At:       {iso_time(n.at)}")
        if n.incident_started is not None:
            lines.append(f"Incident: started {iso_time(n.incident_started)}")
        if n.duration is not None:
            lines.append(f"Duration: {format_duration(n.duration)}")
        if n.reason:
            lines += ["", n.reason]
        mail.set_content("\n".join(lines) + "\n")
        return mail

    def send(self, notification: Notification) -> None:
        mail = self.message(notification)
        try:
            if self.use_ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                client.ehlo()
                if self.starttls:
                    client.starttls(context=ssl.create_default_context())
                    client.ehlo()
                if self.username:
                    client.login(self.username, self.password or "")
                client.send_message(mail)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused) as exc:
            raise DeliveryError(f"SMTP refused: {exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP failed: {type(exc).__name__}: {exc}") from None

    def describe(self) -> str:
        return f"email {self.name!r} (smtp://{self.host}:{self.port} to {len(self.recipients)})"

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []
