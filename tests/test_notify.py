import json
import logging

from sagaway.observe import AlarmState
from sagaway.observe.alarms import Dispatcher, Notification, redact
from sagaway.observe.alarms._notify import (
    EmailNotifier,
    SlackNotifier,
    TicketNotifier,
    WebhookNotifier,
    safe_url,
)
from sagaway.resilience import Retry
from tests.servers import SmtpSink, WebhookServer, closed_port

FAST = Retry(attempts=3, base=0.01, cap=0.02)
T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def alarm_note(kind="ALARM", at=T0, **extra):
    state = {"OK": AlarmState.OK}.get(kind, AlarmState.ALARM)
    defaults = {"incident_started": T0, "duration": at - T0, "reason": "errors >= 5"}
    return Notification(
        alarm="checkout-5xx", kind=kind, state=state, at=at, **{**defaults, **extra}
    )


def test_webhook_posts_json_in_order_with_an_idempotency_key():
    with WebhookServer() as server:
        dispatcher = Dispatcher({"ops": WebhookNotifier("ops", server.url + "/hook")}, retry=FAST)
        notes = [
            alarm_note(),
            alarm_note("RENOTIFY", T0 + 120, renotify_count=1),
            alarm_note("OK", T0 + 300),
        ]
        for note in notes:
            dispatcher.submit(note, ["ops"])
        assert dispatcher.flush(timeout=10)
        dispatcher.close()
    bodies = server.delivered()
    assert [b["kind"] for b in bodies] == ["ALARM", "RENOTIFY", "OK"]
    assert bodies[0]["source"] == "sagaway" and bodies[0]["timestamp"] == "2024-05-01T12:00:00Z"
    assert bodies[2]["duration_seconds"] == 300 and "lasted 5m" in bodies[2]["summary"]
    assert server.requests[1]["headers"]["Idempotency-Key"] == "checkout-5xx/RENOTIFY/1714564920"
    assert dispatcher.sent == {"ops": 3} and dispatcher.failures == []


def test_transient_failures_are_retried_with_backoff_until_delivered():
    with WebhookServer(statuses=[503, 429]) as server:
        dispatcher = Dispatcher({"ops": WebhookNotifier("ops", server.url)}, retry=FAST)
        dispatcher.submit(alarm_note(), ["ops"])
        assert dispatcher.flush(timeout=10)
        dispatcher.close()
    assert [r["status"] for r in server.requests] == [503, 429, 200]
    assert dispatcher.failures == []


def test_a_failing_notifier_is_reported_never_dropped_and_secrets_stay_out_of_logs(
    tmp_path, caplog
):
    secret = "T0KEN-s3cr3t-abcdef"
    dead_letter = tmp_path / "undelivered.jsonl"
    reported = []
    with WebhookServer(statuses=[400]) as broken, WebhookServer() as backup:
        notifiers = {
            "broken": WebhookNotifier("broken", f"{broken.url}/services/{secret}?token={secret}"),
            "unreachable": SlackNotifier(
                "unreachable", f"http://127.0.0.1:{closed_port()}/hooks/{secret}"
            ),
            "backup": WebhookNotifier("backup", backup.url),
        }
        with caplog.at_level(logging.DEBUG, logger="sagaway.alarms"):
            dispatcher = Dispatcher(
                notifiers, retry=FAST, dead_letter=dead_letter, on_failure=reported.append
            )
            dispatcher.submit(alarm_note(), ["broken", "unreachable"])
            assert dispatcher.flush(timeout=10)
            dispatcher.close()
        warnings = backup.delivered()
    # 400 is permanent (1 try); a refused connection is retried until the policy gives up.
    alarm_failures = [f for f in dispatcher.failures if f.notification.kind == "ALARM"]
    assert {f.notifier: f.attempts for f in alarm_failures} == {"broken": 1, "unreachable": 3}
    assert "HTTP 400" in next(f.error for f in reported if f.notifier == "broken")
    # Every failure (including the warning the dead notifier could not take) is reported
    # and kept in the dead-letter file with the full notification.
    assert len(reported) == len(dispatcher.failures)
    records = [json.loads(line) for line in dead_letter.read_text().splitlines()]
    assert sorted((r["failure"]["notifier"], r["notification"]["kind"]) for r in records) == [
        ("broken", "ALARM"),
        ("unreachable", "ALARM"),
        ("unreachable", "NOTIFIER_FAILING"),
    ]
    # The healthy notifier was told, once per failing notifier.
    assert sorted(w["alarm"] for w in warnings) == ["notifier:broken", "notifier:unreachable"]
    assert all(w["kind"] == "NOTIFIER_FAILING" for w in warnings)
    # No secret anywhere it could leak.
    everything = caplog.text + dead_letter.read_text() + json.dumps(warnings)
    everything += "".join(f.error for f in reported)
    assert secret not in everything
    assert "gave up on checkout-5xx/ALARM" in caplog.text


def test_redaction_covers_known_secrets_and_credentials_in_urls():
    text = "POST https://bot:hunter2@hooks.example.com/T1/B2/XyZ123 failed"
    assert redact(text, ["/T1/B2/XyZ123"]) == "POST https://bot:***@hooks.example.com*** failed"
    assert (
        safe_url("https://hooks.example.com/services/T1/B2/XyZ?x=1")
        == "https://hooks.example.com/…"
    )
    assert "XyZ" not in WebhookNotifier("w", "https://h.example.com/XyZ123").describe()


def test_slack_payload_is_compatible_with_incoming_webhooks():
    payload = SlackNotifier("s", "https://hooks.example.com/x").payload(alarm_note("OK", T0 + 65))
    assert payload["text"].startswith(":white_check_mark: [OK] checkout-5xx recovered")
    attachment = payload["attachments"][0]
    assert attachment["color"] == "#2e7d32"
    assert {"title": "Incident", "value": "1m 5s", "short": True} in attachment["fields"]


def test_ticket_webhook_opens_comments_and_resolves_one_ticket_per_incident():
    with WebhookServer() as server:
        ticket = TicketNotifier("jira", server.url, project="SHOP", labels=("checkout",))
        dispatcher = Dispatcher({"jira": ticket}, retry=FAST)
        dispatcher.submit(alarm_note(), ["jira"])
        dispatcher.submit(alarm_note("RENOTIFY", T0 + 60, renotify_count=1), ["jira"])
        dispatcher.submit(alarm_note("OK", T0 + 120), ["jira"])
        quiet_ok = Notification("checkout-5xx", "OK", AlarmState.OK, T0 + 999)
        dispatcher.submit(quiet_ok, ["jira"])  # not part of an incident: no ticket
        assert dispatcher.flush(timeout=10)
        dispatcher.close()
    bodies = server.delivered()
    assert [b["action"] for b in bodies] == ["open", "comment", "resolve"]
    assert len({b["dedup_key"] for b in bodies}) == 1
    assert bodies[0]["project"] == "SHOP" and bodies[0]["labels"] == ["checkout"]


def test_email_is_delivered_through_a_real_smtp_server():
    with SmtpSink() as sink:
        mailer = EmailNotifier(
            "oncall",
            "127.0.0.1",
            "alarms@shop.example",
            ["oncall@shop.example", "b@shop.example"],
            port=sink.port,
            username="alarms",
            password="pw-123456",
        )
        dispatcher = Dispatcher({"oncall": mailer}, retry=FAST)
        dispatcher.submit(alarm_note("OK", T0 + 3725), ["oncall"])
        assert dispatcher.flush(timeout=10)
        dispatcher.close()
    assert dispatcher.failures == []
    [delivered] = sink.messages
    assert delivered["to"] == ["oncall@shop.example", "b@shop.example"]
    message = delivered["message"]
    assert message["Subject"].startswith("[OK] checkout-5xx recovered")
    body = message.get_payload(decode=True).decode()
    assert "Duration: 1h 2m 5s" in body and "Incident: started 2024-05-01T12:00:00Z" in body
    assert sink.logins == [("alarms", "pw-123456")]


def test_email_to_an_unreachable_server_fails_without_showing_the_password(caplog):
    mailer = EmailNotifier(
        "oncall", "127.0.0.1", "a@x", ["b@x"], port=closed_port(), password="pw-very-secret"
    )
    with caplog.at_level(logging.WARNING, logger="sagaway.alarms"):
        dispatcher = Dispatcher({"oncall": mailer}, retry=FAST)
        dispatcher.submit(alarm_note(), ["oncall"])
        assert dispatcher.flush(timeout=10)
        dispatcher.close()
    [failure] = dispatcher.failures
    assert failure.attempts == 3 and "SMTP failed" in failure.error
    assert "pw-very-secret" not in caplog.text


def test_closing_with_undelivered_notifications_reports_them(tmp_path):
    slow = Retry(attempts=10, base=5.0, cap=5.0, jitter="none")
    port = closed_port()
    dispatcher = Dispatcher(
        {"dead": WebhookNotifier("dead", f"http://127.0.0.1:{port}/")},
        retry=slow,
        dead_letter=tmp_path / "dl.jsonl",
    )
    dispatcher.submit(alarm_note(), ["dead"])
    dispatcher.submit(alarm_note("RENOTIFY", T0 + 60), ["dead"])
    dispatcher.close(timeout=0.3)
    kinds = sorted(f.notification.kind for f in dispatcher.failures)
    assert kinds == ["ALARM", "RENOTIFY"]
    assert len((tmp_path / "dl.jsonl").read_text().splitlines()) == 2
