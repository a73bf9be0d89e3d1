"""Each transport against a loopback stand-in of its service, judged as the service would."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from django.core.exceptions import ValidationError

from alerts.transports import TRANSPORTS, get_transport
from alerts.transports.base import Destination, Message, TransportError
from tests.alerts.conftest import (
    ACK_URL,
    INCIDENT_URL,
    PAGERDUTY_KEY,
    RUNBOOK_URL,
    TELEGRAM_TOKEN,
    incident,
)
from tests.receivers import TWILIO_FROM, TWILIO_SID, TWILIO_TOKEN, Receiver, SmtpServer
from tests.targets import HttpTarget, closed_port, silent_tcp_server

REASON = 'HTTP 503 "Service Unavailable"'
SLACK_PATH = "/slack/services/T000/B000/s3cretSlackPath"


def send(
    kind: str, message: Message, config: dict[str, Any] | None = None, address: str = ""
) -> None:
    get_transport(kind).send(Destination(kind, config or {}, address, name="test"), message)


def acknowledged(page: Message) -> Message:
    return replace(
        page, event="acknowledged", actor="alice", summary="Acknowledged by alice: api down"
    )


def resolved(page: Message) -> Message:
    return replace(page, event="resolved", actor="bob", summary="api down is back up")


def storm(count: int) -> Message:
    incidents = tuple(
        incident(id=n, title=f"svc{n} down", monitor=f"svc{n}", severity="low" if n % 2 else "high")
        for n in range(1, count + 1)
    )
    return Message(
        event="grouped",
        summary=f"{count} incidents opened",
        incidents=incidents,
        dedup_key="watchpost-storm-1",
        site_url="http://127.0.0.1:8000",
    )


# --- Slack, Discord, Teams ------------------------------------------------------------------------


def test_it_posts_to_slack_the_monitor_reason_runbook_and_ack_link(
    receiver: Receiver, page: Message
) -> None:
    send("slack", page, {"url": receiver.url(SLACK_PATH)})
    request = receiver.wait_for(1)[0]
    text = request.json["text"]
    assert page.summary in text
    assert "*Monitor:* api" in text and f"*Reason:* {REASON}" in text
    assert f"<{ACK_URL}|Acknowledge>" in text and f"<{RUNBOOK_URL}|Runbook>" in text
    buttons = [
        b
        for block in request.json["blocks"]
        if block["type"] == "actions"
        for b in block["elements"]
    ]
    assert buttons[0] == {
        "type": "button",
        "text": {"type": "plain_text", "text": "Acknowledge"},
        "url": ACK_URL,
        "style": "primary",
    }


def test_it_escapes_slack_control_characters(receiver: Receiver, page: Message) -> None:
    message = replace(page, summary="disk <90% & rising>")
    send("slack", message, {"url": receiver.url(SLACK_PATH)})
    assert "disk &lt;90% &amp; rising&gt;" in receiver.wait_for(1)[0].json["text"]


def test_it_tells_slack_who_acknowledged_without_an_ack_link(
    receiver: Receiver, page: Message
) -> None:
    send("slack", resolved(page), {"url": receiver.url(SLACK_PATH)})
    text = receiver.wait_for(1)[0].json["text"]
    assert "Resolved by bob" in text
    assert ACK_URL not in text and RUNBOOK_URL in text


def test_it_lists_a_storm_in_one_slack_message(receiver: Receiver) -> None:
    send("slack", storm(14), {"url": receiver.url(SLACK_PATH)})
    request = receiver.wait_for(1)[0]
    assert "svc1 down" in request.json["text"] and "svc10 down" in request.json["text"]
    assert "…and 4 more incidents" in request.json["text"]
    assert len(receiver.requests) == 1


def test_it_posts_discord_content_and_an_embed_per_incident(
    receiver: Receiver, page: Message
) -> None:
    send("discord", page, {"url": receiver.url("/discord/api/webhooks/1/tok")})
    payload = receiver.wait_for(1)[0].json
    assert payload["content"] == f"**{page.summary}**"
    assert payload["allowed_mentions"] == {"parse": []}
    [embed] = payload["embeds"]
    assert embed["title"] == "api down" and embed["url"] == INCIDENT_URL
    assert {"name": "Monitor", "value": "api", "inline": True} in embed["fields"]
    assert {"name": "Reason", "value": REASON, "inline": False} in embed["fields"]
    assert f"[Acknowledge]({ACK_URL})" in embed["description"]
    assert f"[Runbook]({RUNBOOK_URL})" in embed["description"]


def test_it_sends_discord_a_test_message_without_incidents(receiver: Receiver) -> None:
    message = Message(event="test", summary="Test notification from Watchpost to ops")
    send("discord", message, {"url": receiver.url("/discord/api/webhooks/1/tok")})
    payload = receiver.wait_for(1)[0].json
    assert payload["embeds"] == [] and "this destination works" in payload["content"]


def test_it_posts_teams_an_adaptive_card(receiver: Receiver, page: Message) -> None:
    send("teams", acknowledged(page), {"url": receiver.url("/teams/workflows/run?sig=abc")})
    request = receiver.wait_for(1)[0]
    assert request.query == {"sig": ["abc"]}
    card = request.json["attachments"][0]["content"]
    texts = [element.get("text") for element in card["body"]]
    assert "Acknowledged by alice: api down" in texts
    [facts] = [element["facts"] for element in card["body"] if element["type"] == "FactSet"]
    assert {"title": "Reason", "value": REASON} in facts
    [actions] = [element["actions"] for element in card["body"] if element["type"] == "ActionSet"]
    assert [action["title"] for action in actions] == ["Runbook", "Incident"]


# --- Generic webhooks -----------------------------------------------------------------------------


def test_it_posts_the_whole_message_signed_with_the_secret(
    receiver: Receiver, page: Message
) -> None:
    secret = "webhook-shared-secret"
    send("webhook", page, {"url": receiver.url("/hooks/ops"), "secret": secret})
    request = receiver.wait_for(1)[0]
    assert Message.from_dict(request.json) == page
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.header("X-Watchpost-Signature") == f"sha256={expected}"
    assert request.header("X-Watchpost-Event") == "trigger"


def test_it_fills_a_body_template_with_json_escaped_values(
    receiver: Receiver, page: Message
) -> None:
    message = replace(page, incidents=(incident(reason='timeout "read"\nafter 10 s'),))
    template = (
        '{"text": "$summary", "monitor": "$monitor", "why": "$reason", "ack": "$ack_url", '
        '"runbook": "$runbook_url", "id": "$incident_id", "severity": "$severity"}'
    )
    config = {
        "url": receiver.url("/hooks/ops"),
        "body_template": template,
        "headers": {"Authorization": "Bearer t0ken", "X-Team": "sre"},
    }
    send("webhook", message, config)
    request = receiver.wait_for(1)[0]
    assert request.json == {
        "text": page.summary,
        "monitor": "api",
        "why": 'timeout "read"\nafter 10 s',
        "ack": ACK_URL,
        "runbook": RUNBOOK_URL,
        "id": "42",
        "severity": "critical",
    }
    assert request.header("Authorization") == "Bearer t0ken" and request.header("X-Team") == "sre"


def test_it_takes_a_body_template_given_as_an_object(receiver: Receiver, page: Message) -> None:
    config = {"url": receiver.url("/hooks/ops"), "body_template": {"alert": {"name": "$monitor"}}}
    send("webhook", storm(3), config)
    assert receiver.wait_for(1)[0].json == {"alert": {"name": "svc1, svc2, svc3"}}


# --- PagerDuty ------------------------------------------------------------------------------------


def test_it_triggers_a_pagerduty_event(receiver: Receiver, page: Message) -> None:
    send("pagerduty", page, {"routing_key": PAGERDUTY_KEY})
    request = receiver.wait_for(1)[0]
    assert request.path == "/pagerduty/v2/enqueue"
    event = request.json
    assert event["routing_key"] == PAGERDUTY_KEY
    assert event["event_action"] == "trigger" and event["dedup_key"] == "watchpost-incident-42"
    assert event["payload"]["summary"] == page.summary
    assert event["payload"]["source"] == "api" and event["payload"]["severity"] == "critical"
    assert event["payload"]["custom_details"]["reason"] == REASON
    assert {"href": ACK_URL, "text": "Acknowledge"} in event["links"]
    assert {"href": RUNBOOK_URL, "text": "Runbook"} in event["links"]


@pytest.mark.parametrize(
    ("ours", "theirs"), [("high", "error"), ("medium", "warning"), ("low", "info")]
)
def test_it_maps_severities_to_pagerduty(
    receiver: Receiver, page: Message, ours: str, theirs: str
) -> None:
    send(
        "pagerduty",
        replace(page, incidents=(incident(severity=ours),)),
        {"routing_key": PAGERDUTY_KEY},
    )
    assert receiver.wait_for(1)[0].json["payload"]["severity"] == theirs


@pytest.mark.parametrize(
    ("change", "action"), [(acknowledged, "acknowledge"), (resolved, "resolve")]
)
def test_it_acknowledges_and_resolves_by_the_dedup_key(
    receiver: Receiver, page: Message, change: Any, action: str
) -> None:
    send("pagerduty", change(page), {"routing_key": PAGERDUTY_KEY})
    event = receiver.wait_for(1)[0].json
    assert event == {
        "routing_key": PAGERDUTY_KEY,
        "event_action": action,
        "dedup_key": "watchpost-incident-42",
    }


def test_it_triggers_one_pagerduty_event_for_a_storm(receiver: Receiver) -> None:
    send("pagerduty", storm(12), {"routing_key": PAGERDUTY_KEY})
    [request] = receiver.wait_for(1)
    event = request.json
    assert event["event_action"] == "trigger" and event["dedup_key"] == "watchpost-storm-1"
    assert event["payload"]["summary"] == "12 incidents opened"
    assert event["payload"]["severity"] == "error"  # the worst of high and low
    assert len(event["payload"]["custom_details"]["incidents"]) == 12


def test_it_calls_a_rejected_routing_key_permanent(receiver: Receiver, page: Message) -> None:
    with pytest.raises(TransportError) as caught:
        send("pagerduty", page, {"routing_key": "short"})
    assert caught.value.permanent
    assert "PagerDuty answered HTTP 400" in caught.value.message
    assert "routing_key" in caught.value.message


# --- Telegram -------------------------------------------------------------------------------------


def test_it_sends_telegram_html_with_the_links(receiver: Receiver, page: Message) -> None:
    receiver.telegram_token = TELEGRAM_TOKEN
    send("telegram", page, {"bot_token": TELEGRAM_TOKEN, "chat_id": "-1001234"})
    request = receiver.wait_for(1)[0]
    assert request.path == f"/telegram/bot{TELEGRAM_TOKEN}/sendMessage"
    assert request.json["chat_id"] == "-1001234" and request.json["parse_mode"] == "HTML"
    text = request.json["text"]
    assert "Monitor: api" in text and "Reason: HTTP 503 &quot;Service Unavailable&quot;" in text
    assert f'<a href="{ACK_URL}">Acknowledge</a>' in text
    assert f'<a href="{RUNBOOK_URL}">Runbook</a>' in text


def test_it_calls_an_unknown_telegram_chat_permanent_without_the_token(
    receiver: Receiver, page: Message
) -> None:
    receiver.telegram_chats = {"-1001234"}
    with pytest.raises(TransportError) as caught:
        send("telegram", page, {"bot_token": TELEGRAM_TOKEN, "chat_id": "-999"})
    assert caught.value.permanent
    assert "Telegram answered HTTP 400" in caught.value.message
    assert "chat not found" in caught.value.message
    assert TELEGRAM_TOKEN not in caught.value.message


def test_it_sends_a_long_storm_within_telegrams_limit(receiver: Receiver) -> None:
    message = storm(10)
    message = replace(
        message, incidents=tuple(replace(i, reason="x" * 700) for i in message.incidents)
    )
    send("telegram", message, {"bot_token": TELEGRAM_TOKEN, "chat_id": "1"})
    text = receiver.wait_for(1)[0].json["text"]
    assert len(text) <= 4096 and "more incidents" in text


# --- Twilio ---------------------------------------------------------------------------------------


def test_it_texts_every_number_of_an_sms_channel(receiver: Receiver, page: Message) -> None:
    send("twilio", page, {"to": ["+14155550123", "+442071838750"]})
    requests = receiver.wait_for(2)
    assert [r.form["To"] for r in requests] == ["+14155550123", "+442071838750"]
    request = requests[0]
    assert request.path == f"/twilio/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert request.basic_auth == (TWILIO_SID, TWILIO_TOKEN)
    assert request.form["From"] == TWILIO_FROM
    body = request.form["Body"]
    assert len(body) <= 320
    # The summary names the monitor and the reason; the links follow.
    assert body == f"{page.summary} Runbook: {RUNBOOK_URL} Ack: {ACK_URL}"


def test_it_texts_a_contact_from_the_site_account_within_320_characters(
    receiver: Receiver, page: Message
) -> None:
    message = replace(page, summary="[CRITICAL] " + "very long title " * 40)
    send("twilio", message, address="+14155550199")
    request = receiver.wait_for(1)[0]
    assert request.form["To"] == "+14155550199"
    assert len(request.form["Body"]) == 320
    assert request.form["Body"].endswith(f"… Ack: {ACK_URL}")


def test_it_texts_with_a_channels_own_account(receiver: Receiver, page: Message) -> None:
    other = "AC" + "f" * 32
    config = {
        "to": ["+14155550123"],
        "account_sid": other,
        "auth_token": TWILIO_TOKEN,
        "from": "+15005550001",
    }
    send("twilio", page, config)
    request = receiver.wait_for(1)[0]
    assert request.path == f"/twilio/2010-04-01/Accounts/{other}/Messages.json"
    assert request.basic_auth == (other, TWILIO_TOKEN)
    assert request.form["From"] == "+15005550001"


def test_it_says_who_resolved_by_sms(receiver: Receiver, page: Message) -> None:
    send("twilio", resolved(page), address="+14155550199")
    body = receiver.wait_for(1)[0].form["Body"]
    assert body.startswith("api down is back up Resolved by bob")
    assert ACK_URL not in body


def test_it_calls_a_wrong_twilio_token_permanent_without_the_token(
    receiver: Receiver, page: Message, settings: Any
) -> None:
    settings.TWILIO_AUTH_TOKEN = "wrong-token-abcdef"
    with pytest.raises(TransportError) as caught:
        send("twilio", page, address="+14155550199")
    assert caught.value.permanent and "Twilio answered HTTP 401" in caught.value.message
    assert "wrong-token" not in caught.value.message


def test_it_refuses_to_text_without_an_account(page: Message, settings: Any) -> None:
    settings.TWILIO_ACCOUNT_SID = ""
    with pytest.raises(TransportError, match="no Twilio account") as caught:
        send("twilio", page, address="+14155550199")
    assert caught.value.permanent


# --- Email ----------------------------------------------------------------------------------------


def test_it_mails_html_and_text_with_the_ack_link_and_runbook(
    smtp_server: SmtpServer, page: Message
) -> None:
    send("email", page, {"to": ["oncall@example.com", "sre@example.com"]})
    [envelope] = smtp_server.wait_for(1)
    assert envelope.recipients == ["oncall@example.com", "sre@example.com"]
    mail = envelope.message
    assert mail["Subject"] == page.summary
    assert mail["To"] == "oncall@example.com, sre@example.com"
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = mail.get_body(("html",)).get_content()
    assert f"Acknowledge: {ACK_URL}" in text and f"Runbook: {RUNBOOK_URL}" in text
    assert f"Monitor: api\nReason: {REASON}" in text
    assert f'href="{ACK_URL}"' in html and f'href="{RUNBOOK_URL}"' in html
    assert "HTTP 503 &quot;Service Unavailable&quot;" in html


def test_it_mails_a_contact_at_their_address(smtp_server: SmtpServer, page: Message) -> None:
    send("email", acknowledged(page), address="alice@example.com")
    mail = smtp_server.wait_for(1)[0].message
    assert mail["To"] == "alice@example.com"
    text = mail.get_body(("plain",)).get_content()
    assert text.startswith("Acknowledged by alice: api down")
    assert ACK_URL not in text


def test_it_calls_a_refused_recipient_permanent(smtp_server: SmtpServer, page: Message) -> None:
    smtp_server.refused = {"gone@example.com"}
    with pytest.raises(TransportError) as caught:
        send("email", page, address="gone@example.com")
    assert caught.value.permanent and "refused gone@example.com" in caught.value.message


def test_it_calls_an_unreachable_mail_server_temporary(settings: Any, page: Message) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port()
    with pytest.raises(TransportError) as caught:
        send("email", page, address="alice@example.com")
    assert not caught.value.permanent and "ConnectionRefusedError" in caught.value.message


# --- Where notifications may go, and how failures read --------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_it_refuses_loopback_by_default(
    receiver: Receiver, page: Message, settings: Any, host: str
) -> None:
    settings.NOTIFY_ALLOW_PRIVATE = False
    url = f"http://{host}:{receiver.port}{SLACK_PATH}"
    with pytest.raises(TransportError) as caught:
        send("slack", page, {"url": url})
    assert caught.value.permanent
    assert "refused to connect to" in caught.value.message
    assert "loopback address; set NOTIFY_ALLOW_PRIVATE" in caught.value.message
    assert "s3cretSlackPath" not in caught.value.message
    assert receiver.requests == []


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.1.10", "[fd00::1]", "100.64.0.1"])
def test_it_refuses_private_networks_by_default(page: Message, settings: Any, address: str) -> None:
    settings.NOTIFY_ALLOW_PRIVATE = False
    with pytest.raises(TransportError, match="refused to connect") as caught:
        send("webhook", page, {"url": f"http://{address}/hook"})
    assert caught.value.permanent


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "[fd00:ec2::254]", "0.0.0.0", "[::ffff:169.254.169.254]"]
)
def test_it_never_sends_to_metadata_or_unspecified_addresses(
    page: Message, settings: Any, address: str
) -> None:
    settings.NOTIFY_ALLOW_PRIVATE = True
    with pytest.raises(TransportError, match="never allowed") as caught:
        send("webhook", page, {"url": f"http://{address}/latest/meta-data/"})
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(401, True), (403, True), (404, True), (410, True), (400, False), (429, False),
     (500, False), (503, False)],
)  # fmt: skip
def test_it_classifies_answers(
    receiver: Receiver, page: Message, status: int, permanent: bool
) -> None:
    receiver.reply(SLACK_PATH, status)
    with pytest.raises(TransportError) as caught:
        send("slack", page, {"url": receiver.url(SLACK_PATH)})
    assert caught.value.permanent is permanent
    assert caught.value.message == f"Slack answered HTTP {status}: scripted {status}"


@pytest.fixture
def tls_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> Iterator[tuple[HttpTarget, trustme.CA]]:
    """An HTTPS server on 127.0.0.1 whose CA the client trusts (as if it were public)."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    settings.NOTIFY_ALLOW_PRIVATE = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server = HttpTarget(tls=context)
    yield server, ca
    server.close()


def test_it_connects_by_address_and_checks_the_certificate_by_name(
    tls_target: tuple[HttpTarget, trustme.CA], page: Message
) -> None:
    server, ca = tls_target
    ca.issue_cert("localhost").configure_cert(server.server.socket.context)
    server.route("/hook", body="ok")
    send("webhook", page, {"url": server.url("/hook", host="localhost")})
    [request] = server.requests
    assert request["headers"]["Host"] == f"localhost:{server.port}"


def test_it_refuses_a_certificate_for_another_name(
    tls_target: tuple[HttpTarget, trustme.CA], page: Message
) -> None:
    server, ca = tls_target
    ca.issue_cert("other.example").configure_cert(server.server.socket.context)
    server.route("/hook", body="ok")
    with pytest.raises(TransportError, match="webhook: TLS with localhost failed") as caught:
        send("webhook", page, {"url": server.url("/hook", host="localhost")})
    assert not caught.value.permanent
    assert server.requests == []


def test_it_does_not_follow_redirects(receiver: Receiver, page: Message) -> None:
    receiver.reply("/hooks/moved", 302)
    with pytest.raises(TransportError, match="webhook answered HTTP 302"):
        send("webhook", page, {"url": receiver.url("/hooks/moved")})
    assert len(receiver.requests) == 1


def test_it_reports_a_refused_connection_as_temporary(settings: Any, page: Message) -> None:
    settings.NOTIFY_ALLOW_PRIVATE = True
    with pytest.raises(TransportError) as caught:
        send("slack", page, {"url": f"http://127.0.0.1:{closed_port()}/slack/s3cret"})
    assert not caught.value.permanent
    assert caught.value.message == "Slack: could not connect to 127.0.0.1 (Connection refused)"


def test_it_gives_up_on_a_silent_service_after_the_timeout(settings: Any, page: Message) -> None:
    settings.NOTIFY_ALLOW_PRIVATE = True
    settings.NOTIFY_TIMEOUT = 0.5
    with silent_tcp_server() as port, pytest.raises(TransportError) as caught:
        send("discord", page, {"url": f"http://127.0.0.1:{port}/discord/s3cret"})
    assert not caught.value.permanent
    assert caught.value.message == "Discord: 127.0.0.1 did not answer within 0.5 s"


def test_it_names_an_unknown_kind() -> None:
    with pytest.raises(LookupError, match="no transport for kind 'carrier-pigeon'"):
        get_transport("carrier-pigeon")


# --- Config validation ----------------------------------------------------------------------------


H = "https://h.example.com"


@pytest.mark.parametrize(
    ("kind", "config", "error"),
    [
        ("slack", {}, "url: is required"),
        ("slack", {"url": "ftp://h.example.com/x"}, "url: must be an http:// or https:// URL"),
        ("slack", {"url": H, "channel": "#ops"}, "channel: is not a setting"),
        ("discord", {"url": "http://10.0.0.5/hook"}, "url: 10.0.0.5 is a private address"),
        ("teams", {"url": 42}, "url: must be text"),
        ("pagerduty", {"routing_key": "abc123"}, "routing_key: must be 32 letters and digits"),
        ("telegram", {"bot_token": "nope", "chat_id": "-100"}, "bot_token: must look like"),
        ("telegram", {"bot_token": TELEGRAM_TOKEN, "chat_id": "my chat"}, "chat_id: must be a"),
        ("twilio", {"to": ["555-0123"]}, "to: '555-0123' is not in E.164 form"),
        ("twilio", {"to": "+14155550123"}, "to: must be a list of text"),
        ("twilio", {"to": ["+14155550123"], "account_sid": "XY1"}, "account_sid: must be AC"),
        ("email", {"to": ["ops@example.com", "not-an-address"]}, "to: 'not-an-address' is not"),
        ("webhook", {"url": H, "headers": {"Host": "x"}}, "headers: Host is set by Watchpost"),
        ("webhook", {"url": H, "headers": {"X-A": "1\r\nX-B: 2"}}, "headers: the value of X-A"),
        (
            "webhook",
            {"url": H, "body_template": '{"a": "$nope"}'},
            "body_template: unknown placeholder $nope",
        ),
        ("webhook", {"url": H, "body_template": '{"id": $incident_id}'}, "body_template: is not"),
    ],
)
def test_it_names_the_key_of_a_bad_config(kind: str, config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TRANSPORTS[kind].clean_config(config)
    [shown] = [m for m in caught.value.message_dict["config"] if m.startswith(error.split(":")[0])]
    assert shown.startswith(error), shown


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("slack", {"url": "https://hooks.slack.com/services/T0/B0/X"}),
        ("pagerduty", {"routing_key": PAGERDUTY_KEY}),
        ("telegram", {"bot_token": TELEGRAM_TOKEN, "chat_id": -1001234}),
        ("twilio", {"to": ["+14155550123"], "from": "+15005550006"}),
        ("email", {"to": ["ops@example.com"]}),
        ("webhook", {"url": "https://h.example.com", "secret": "s", "headers": {"X-Team": "sre"},
                     "body_template": {"text": "$summary", "id": "$incident_id"}}),
    ],
)  # fmt: skip
def test_it_accepts_each_kinds_example_configs(kind: str, config: dict[str, Any]) -> None:
    assert TRANSPORTS[kind].clean_config(config) == config


@pytest.mark.parametrize("kind", sorted(TRANSPORTS))
def test_it_documents_a_valid_example_for_every_kind(kind: str, settings: Any) -> None:
    transport = TRANSPORTS[kind]
    assert transport.config_keys
    assert transport.clean_config(json.loads(json.dumps(transport.example))) == transport.example
