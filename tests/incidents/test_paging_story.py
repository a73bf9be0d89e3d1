"""The whole story against real servers on loopback: a target fails, people are paged, one
acknowledges from the link in an SMS, paging stops, the target recovers and everyone hears it."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from alerts import delivery
from alerts.models import Channel, LayerMember, OnCallSchedule, ScheduleLayer
from checks.models import Monitor
from checks.tasks import probe_batch
from incidents.models import Incident
from monitorsite import metrics
from tests.incidents.paging import contact, policy, the_incident, tick, timeline
from tests.receivers import Receiver, Request, SmtpServer
from tests.targets import HttpTarget

pytestmark = pytest.mark.django_db

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
SECRET = "webhook-signing-secret"
RE = r"HTTP status is 500, expected one of 200-299"


def deliver_due() -> None:
    for pk in delivery.due_ids():
        delivery.deliver(pk)


def said(request: Request) -> str:
    """What a request carried, whatever its encoding."""
    return request.form.get("Body") or request.body.decode(errors="replace")


def probe(monitor: Monitor, slot: datetime) -> None:
    probe_batch("default", [[monitor.pk, slot.isoformat()]])
    monitor.refresh_from_db()


@pytest.fixture
def channels(receiver: Receiver) -> dict[str, Channel]:
    return {
        "slack": Channel.objects.create(
            name="#ops", kind="slack", config={"url": receiver.url("/slack/T0/B0/x")}
        ),
        "pagerduty": Channel.objects.create(
            name="PagerDuty", kind="pagerduty", config={"routing_key": ROUTING_KEY}
        ),
        "webhook": Channel.objects.create(
            name="incident bot",
            kind="webhook",
            config={"url": receiver.url("/hooks/incidents"), "secret": SECRET},
        ),
    }


def test_a_failing_target_pages_escalates_is_acknowledged_from_the_sms_and_recovers(
    target: HttpTarget, receiver: Receiver, smtp_server: SmtpServer, channels: dict[str, Channel]
) -> None:
    alice = contact("Alice", email="alice@example.test", rules=[("email", 0)])
    bob = contact("Bob", phone="+14155550102", rules=[("sms", 0)])
    policy(
        "default",
        steps=[
            {"contacts": [alice], "channels": list(channels.values())},
            {"delay_minutes": 5, "contacts": [bob]},
        ],
    )
    target.route("/health", body={"status": "ok"})
    api = Monitor.objects.create(
        name="checkout-api",
        kind="http",
        target=target.url("/health"),
        interval=30,
        timeout=5,
        runbook_url="https://wiki.example.test/runbooks/checkout",
    )
    # Slots in the past: a batch waits for a future slot before probing.
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    probe(api, t0)
    target.route("/health", status=500, body={"status": "broken"})
    probe(api, t0 + timedelta(seconds=30))
    probe(api, t0 + timedelta(seconds=60))
    assert api.status == "down"

    tick()
    deliver_due()
    incident = the_incident(api)
    assert Incident.objects.count() == 1

    [slack] = receiver.to("/slack/")
    assert "checkout-api is down" in slack.json["text"]
    assert RE in json.dumps(slack.json)
    assert "/ack/" in json.dumps(slack.json)
    assert "https://wiki.example.test/runbooks/checkout" in json.dumps(slack.json)

    [trigger] = receiver.to("/pagerduty/")
    assert trigger.json["event_action"] == "trigger"
    assert trigger.json["routing_key"] == ROUTING_KEY
    assert trigger.json["dedup_key"] == f"watchpost-incident-{incident.pk}"
    assert trigger.json["payload"]["severity"] == "error"  # high → error

    [hook] = receiver.to("/hooks/")
    expected = hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hook.header("X-Watchpost-Signature") == f"sha256={expected}"

    [mail] = smtp_server.wait_for(1)
    assert mail.recipients == ["alice@example.test"]
    text = mail.message.get_body(("plain",)).get_content()
    assert "checkout-api is down" in text and RE in text
    assert "/ack/" in text and "https://wiki.example.test/runbooks/checkout" in text
    assert mail.message.get_body(("html",)) is not None

    # Nobody acknowledges: level 2 (Bob, by SMS) after 5 minutes.
    with time_machine.travel(timezone.now() + timedelta(minutes=5, seconds=5), tick=False):
        tick()
        deliver_due()
    [sms] = receiver.to("/twilio/")
    assert sms.form["To"] == "+14155550102"
    assert "checkout-api is down" in sms.form["Body"]

    # Bob acknowledges from the link in his SMS.
    link = next(word for word in sms.form["Body"].split() if "/ack/" in word)
    browser = Client()
    assert "Acknowledge" in browser.get(urlsplit(link).path).content.decode()
    browser.post(urlsplit(link).path)
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by) == ("acknowledged", "Bob")
    deliver_due()
    acks = [r for r in receiver.requests if "Acknowledged by Bob" in said(r)]
    assert {r.service for r in acks} == {"slack", "webhook", "twilio"}
    assert [r.json["event_action"] for r in receiver.to("/pagerduty/")] == [
        "trigger",
        "acknowledge",
    ]
    assert "Acknowledged by Bob" in smtp_server.wait_for(2)[1].message["Subject"]

    # Escalation has stopped: an hour later nothing more is sent.
    sent = len(receiver.requests)
    with time_machine.travel(timezone.now() + timedelta(hours=1), tick=False):
        tick()
        deliver_due()
    assert len(receiver.requests) == sent

    # The target recovers: resolved, and announced.
    target.route("/health", body={"status": "ok"})
    probe(api, t0 + timedelta(seconds=90))
    tick()
    deliver_due()
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert [r.json["event_action"] for r in receiver.to("/pagerduty/")] == [
        "trigger",
        "acknowledge",
        "resolve",
    ]
    assert any("Resolved" in r.body.decode(errors="replace") for r in receiver.to("/slack/"))

    story = "\n".join(timeline(incident))
    for line in (
        "opened: checkout-api is down",
        "notified: level 1: paging Alice (email)",
        "escalated: level 2: paging Bob (SMS)",
        "acknowledged: acknowledged by Bob via acknowledge link",
        "resolved: resolved by Watchpost: checkout-api recovered",
    ):
        assert line in story


def test_a_receiver_answering_500_is_retried_and_its_failure_lands_in_the_timeline(
    receiver: Receiver, settings
) -> None:
    settings.DELIVERY_MAX_ATTEMPTS = 3
    slack = Channel.objects.create(
        name="#ops", kind="slack", config={"url": receiver.url("/slack/T/B/y")}
    )
    policy("default", steps=[{"channels": [slack]}])
    from tests.incidents.paging import fail, monitor

    api = monitor("api")
    fail(api)
    tick()
    receiver.reply("/slack/T/B/y", 500, 500, 500)
    incident = the_incident(api)
    row = incident.notifications.get()
    for minutes in (0, 5, 30):
        with time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False):
            delivery.deliver(row.pk)
    row.refresh_from_db()
    assert row.status == "failed" and row.attempts == 3
    assert len(receiver.to("/slack/")) == 3
    # Each failed attempt counts in /metrics.
    failures = metrics.NOTIFICATION_FAILURES.key({"channel_kind": "slack"})
    assert metrics.recorder.pending[("watchpost_notification_failures_total", failures)] == 3
    # The incidents app hears the outcome (on commit, in production).
    from alerts.signals import notification_finished

    notification_finished.send(sender=type(row), notification=row)
    assert any(
        line.startswith("delivery_failed: delivery failed after 3 attempt(s)")
        for line in timeline(incident)
    )


def test_the_schedule_pages_whoever_is_on_call_across_a_dst_change(receiver: Receiver) -> None:
    carol = contact("Carol", phone="+14155550103")
    dan = contact("Dan", phone="+14155550104")
    schedule = OnCallSchedule.objects.create(name="Platform", timezone="Europe/Berlin")
    layer = ScheduleLayer.objects.create(
        schedule=schedule,
        level=1,
        shift="daily",
        start_date=date(2026, 3, 1),
        handoff_time=time(9, 0),
    )
    LayerMember.objects.create(layer=layer, contact=carol, position=0)
    LayerMember.objects.create(layer=layer, contact=dan, position=1)
    policy("default", steps=[{"layers": [layer]}])
    from tests.incidents.paging import fail, flip, monitor

    api = monitor("api")
    # 2026-03-29: clocks go forward at 02:00 in Berlin; 09:00 local is 07:00 UTC.
    # Shift 27 (Dan, from 28 March 09:00) ends at 09:00 local on the 29th, when
    # shift 28 (Carol) starts. A hand-off computed at UTC+1 would fall at 08:00 UTC.
    for at, who in (
        (datetime(2026, 3, 29, 6, 59, tzinfo=UTC), "+14155550104"),
        (datetime(2026, 3, 29, 7, 1, tzinfo=UTC), "+14155550103"),
    ):
        with time_machine.travel(at, tick=False):
            fail(api)
            tick()
            deliver_due()
            flip(api, "up")
            tick()
        assert receiver.to("/twilio/")[-1].form["To"] == who
