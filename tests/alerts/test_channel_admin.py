"""The channel, contact and notification admin as an SRE uses it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from alerts.models import Channel, Contact, DeliveryAttempt, Notification
from tests.alerts.conftest import PAGERDUTY_KEY
from tests.receivers import Receiver, Reply, SmtpServer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("collected_static")]

CHANNELS = "/admin/alerts/channel/"
CONTACTS = "/admin/alerts/contact/"
NOTIFICATIONS = "/admin/alerts/notification/"


def shown_messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def channel_form(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "ops",
        "kind": "slack",
        "config": "{}",
        "enabled": "on",
        "rate_limit": "20",
    } | overrides


def contact_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Alice",
        "email": "alice@example.com",
        "phone": "+14155550123",
        "chat_handle": "@alice",
        "user": "",
        "rules-TOTAL_FORMS": "0",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
    }
    return data | overrides


# --- Channels -------------------------------------------------------------------------------------


def test_it_shows_a_flagged_channel_in_red_with_the_reason(
    admin_client: Client, make_channel: Callable[..., Channel]
) -> None:
    make_channel(
        "slack", {"url": "https://hooks.slack.com/x"}, name="archived room",
        flagged_at=timezone.now(), flagged_reason="Slack answered HTTP 410: channel_is_archived",
    )  # fmt: skip
    make_channel("slack", {"url": "https://hooks.slack.com/y"}, name="healthy room")
    response = admin_client.get(CHANNELS)
    html = response.content.decode()
    assert "flagged: Slack answered HTTP 410: channel_is_archived" in html
    assert 'style="color: #c62828;"' in html
    flagged = admin_client.get(CHANNELS, {"flagged": "yes"})
    assert [c.name for c in flagged.context["cl"].result_list] == ["archived room"]


def test_it_names_the_bad_key_and_keeps_what_was_typed(admin_client: Client) -> None:
    typed = '{"routing_key": "too-short"}'
    response = admin_client.post(f"{CHANNELS}add/", channel_form(kind="pagerduty", config=typed))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["config"]
    assert errors == ["routing_key: must be 32 letters and digits, got 9 characters"]
    assert typed in response.content.decode().replace("&quot;", '"')
    assert not Channel.objects.exists()


def test_it_keeps_text_that_is_not_json(admin_client: Client) -> None:
    typed = '{"url": "https://hooks.slack.com/x",}'
    response = admin_client.post(f"{CHANNELS}add/", channel_form(config=typed))
    assert "config" in response.context["adminform"].form.errors
    assert typed in response.content.decode().replace("&quot;", '"')


def test_it_saves_a_valid_channel(admin_client: Client) -> None:
    config = json.dumps({"routing_key": PAGERDUTY_KEY})
    response = admin_client.post(f"{CHANNELS}add/", channel_form(kind="pagerduty", config=config))
    assert response.status_code == 302
    assert Channel.objects.get().config == {"routing_key": PAGERDUTY_KEY}


def test_it_lists_every_kinds_config_keys_below_the_form(admin_client: Client) -> None:
    html = admin_client.get(f"{CHANNELS}add/").content.decode()
    assert "Config of each kind" in html
    documented = [
        ("slack", "url"), ("pagerduty", "routing_key"), ("telegram", "chat_id"),
        ("twilio", "account_sid"), ("webhook", "body_template"), ("email", "to"),
    ]  # fmt: skip
    for kind, key in documented:
        assert f'<tr data-kind="{kind}">' in html and f"<code>{key}</code>" in html


def test_it_sends_a_test_and_reports_success_and_the_error(
    admin_client: Client, receiver: Receiver, make_channel: Callable[..., Channel]
) -> None:
    good = make_channel("slack", {"url": receiver.url("/slack/good")}, name="ops room")
    gone = make_channel("slack", {"url": receiver.url("/slack/gone")}, name="old room")
    receiver.reply("/slack/gone", Reply(410, "channel_is_archived"))
    response = admin_client.post(
        CHANNELS,
        {"action": "send_test", "_selected_action": [good.pk, gone.pk]},
        follow=True,
    )
    assert sorted(shown_messages(response)) == [
        "old room via slack: test notification failed: "
        "Slack answered HTTP 410: channel_is_archived",
        "ops room via slack: test notification sent",
    ]
    assert (
        "Test notification from Watchpost to ops room" in receiver.to("/slack/good")[0].json["text"]
    )
    assert "flagged: Slack answered HTTP 410" in response.content.decode()


def test_it_clears_the_flag(admin_client: Client, make_channel: Callable[..., Channel]) -> None:
    channel = make_channel(
        "slack",
        {"url": "https://hooks.slack.com/x"},
        flagged_at=timezone.now(),
        flagged_reason="410",
    )
    response = admin_client.post(
        CHANNELS, {"action": "clear_flag", "_selected_action": [channel.pk]}, follow=True
    )
    assert shown_messages(response) == ["Cleared the flag of 1 channel(s)."]
    channel.refresh_from_db()
    assert (channel.flagged_at, channel.flagged_reason) == (None, "")


# --- Contacts -------------------------------------------------------------------------------------


def test_it_saves_a_contact_with_rules(admin_client: Client) -> None:
    form = contact_form(
        **{
            "rules-TOTAL_FORMS": "2",
            "rules-0-method": "email",
            "rules-0-delay_minutes": "0",
            "rules-1-method": "sms",
            "rules-1-delay_minutes": "5",
        }
    )
    response = admin_client.post(f"{CONTACTS}add/", form)
    assert response.status_code == 302
    alice = Contact.objects.get()
    assert [str(rule) for rule in alice.rules.all()] == ["Email at once", "SMS after 5 min"]
    listing = admin_client.get(CONTACTS).content.decode()
    assert "Email at once, SMS after 5 min" in listing


def test_it_refuses_a_phone_number_not_in_e164(admin_client: Client) -> None:
    response = admin_client.post(f"{CONTACTS}add/", contact_form(phone="0415 555 0123"))
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["phone"]
    assert "is not in E.164 form" in error
    assert 'value="0415 555 0123"' in response.content.decode()


def test_it_sends_a_test_to_a_contact(
    admin_client: Client, smtp_server: SmtpServer, receiver: Receiver
) -> None:
    alice = Contact.objects.create(name="Alice", email="alice@example.com", phone="+14155550123")
    nobody = Contact.objects.create(name="Nobody")
    response = admin_client.post(
        CONTACTS, {"action": "send_test", "_selected_action": [alice.pk, nobody.pk]}, follow=True
    )
    assert sorted(shown_messages(response)) == [
        "Alice via email (alice@example.com): test notification sent",
        "Alice via twilio (+14155550123): test notification sent",
        "Nobody: nothing to test (no email address or phone)",
    ]
    assert smtp_server.wait_for(1)[0].recipients == ["alice@example.com"]


# --- The notification log -------------------------------------------------------------------------


def test_it_shows_the_log_with_attempts_and_filters(
    admin_client: Client,
    make_channel: Callable[..., Channel],
    make_notification: Callable[..., Any],
) -> None:
    channel = make_channel("slack", {"url": "https://hooks.slack.com/x"}, name="ops room")
    failed = make_notification(
        channel, status="failed", attempts=1, last_error="Slack answered HTTP 404: no_service"
    )
    make_notification(channel, status="sent", sent_at=timezone.now())
    DeliveryAttempt.objects.create(
        notification=failed, number=1, started_at=timezone.now(), duration_ms=12.3, ok=False,
        error="Slack answered HTTP 404: no_service",
    )  # fmt: skip
    listed = admin_client.get(NOTIFICATIONS, {"status__exact": "failed"})
    assert [n.pk for n in listed.context["cl"].result_list] == [failed.pk]
    found = admin_client.get(NOTIFICATIONS, {"q": "no_service"})
    assert [n.pk for n in found.context["cl"].result_list] == [failed.pk]
    detail = admin_client.get(f"{NOTIFICATIONS}{failed.pk}/change/").content.decode()
    assert "delivery attempts" in detail.lower()
    assert "12 ms" in detail and "Slack answered HTTP 404: no_service" in detail
    assert admin_client.get(f"{NOTIFICATIONS}add/").status_code == 403
    assert Notification.objects.count() == 2
