"""Escalation: steps after their delays, until someone acknowledges; snapshots; stale tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from alerts.models import EscalationStep, Notification
from incidents import services
from tests.incidents.paging import (
    contact,
    fail,
    flip,
    monitor,
    policy,
    sent_to,
    the_incident,
    tick,
    timeline,
    webhook_channel,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> dict[str, object]:
    alice = contact(
        "Alice", email="alice@example.test", phone="+14155550101", rules=[("email", 0), ("sms", 5)]
    )
    bob = contact("Bob", email="bob@example.test", phone="+14155550102", rules=[("sms", 0)])
    ops = webhook_channel("ops")
    policy(
        "default",
        steps=[
            {"delay_minutes": 0, "contacts": [alice], "channels": [ops]},
            {"delay_minutes": 10, "contacts": [bob]},
        ],
    )
    return {"alice": alice, "bob": bob, "ops": ops}


def later(minutes: float) -> time_machine.travel:
    return time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False)


def test_level_one_is_paged_at_once_and_level_two_after_its_delay(people: dict) -> None:
    api = monitor("api")
    fail(api)
    tick()
    incident = the_incident(api)
    assert sent_to(incident) == [
        ("trigger", "email", "Alice <alice@example.test>"),
        ("trigger", "twilio", "Alice <+14155550101>"),  # her rule: SMS after 5 minutes
        ("trigger", "webhook", "ops"),
    ]
    sms = Notification.objects.get(incident=incident, transport="twilio")
    assert sms.not_before - sms.created_at == timedelta(minutes=5)
    assert (
        "level 1: paging Alice (email), Alice (SMS after 5 min), ops (Generic webhook)"
        in timeline(incident)[1]
    )

    with later(9):
        tick()
        assert len(sent_to(incident)) == 3  # level 2 is not due yet
    with later(10.1):
        tick()
        assert sent_to(incident)[-1] == ("trigger", "twilio", "Bob <+14155550102>")
        incident.refresh_from_db()
        assert any(line.startswith("escalated: level 2: paging Bob") for line in timeline(incident))


def test_acknowledging_stops_escalation_and_cancels_delayed_pages(people: dict) -> None:
    api = monitor("api")
    fail(api)
    tick()
    incident = the_incident(api)
    Notification.objects.filter(incident=incident, transport__in=["email", "webhook"]).update(
        status="sent"
    )
    with later(2):
        services.acknowledge(incident.pk, "Alice", via="acknowledge link")
    incident.refresh_from_db()
    assert incident.status == "acknowledged" and incident.acknowledged_by == "Alice"
    # Alice's delayed SMS is not sent any more; Bob (level 2) is never paged.
    assert (
        Notification.objects.get(incident=incident, transport="twilio", event="trigger").status
        == "cancelled"
    )
    with later(30):
        tick()
    assert [row for row in sent_to(incident) if row[0] == "trigger"] == [
        ("trigger", "email", "Alice <alice@example.test>"),
        ("trigger", "twilio", "Alice <+14155550101>"),
        ("trigger", "webhook", "ops"),
    ]
    # Those already paged hear who acknowledged.
    assert [row for row in sent_to(incident) if row[0] == "acknowledged"] == [
        ("acknowledged", "email", "Alice <alice@example.test>"),
        ("acknowledged", "webhook", "ops"),
    ]
    message = Notification.objects.filter(incident=incident, event="acknowledged").first().message
    assert message["summary"] == "Acknowledged by Alice: api is down"

    # A second acknowledgement (a link clicked twice) changes nothing.
    services.acknowledge(incident.pk, "Bob")
    incident.refresh_from_db()
    assert incident.acknowledged_by == "Alice"
    assert Notification.objects.filter(incident=incident, event="acknowledged").count() == 2


def test_recovery_resolves_and_announces_to_those_paged(people: dict) -> None:
    api = monitor("api")
    fail(api)
    tick()
    incident = the_incident(api)
    Notification.objects.filter(incident=incident, transport="webhook").update(status="sent")
    flip(api, "up", "HTTP 200 in 9 ms")
    tick()
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert sent_to(incident, event="resolved") == [("resolved", "webhook", "ops")]
    assert Notification.objects.get(incident=incident, event="resolved").message["summary"] == (
        "Resolved by Watchpost: api is down"
    )


def test_editing_a_policy_does_not_change_a_page_in_flight(people: dict) -> None:
    api = monitor("api")
    fail(api)
    tick()
    incident = the_incident(api)
    carol = contact("Carol", email="carol@example.test")
    step = EscalationStep.objects.get(position=1)
    step.contacts.set([carol])
    step.delay_minutes = 1
    step.save()
    with later(5):
        tick()
        assert not any("Carol" in row[2] for row in sent_to(incident))
    with later(10.1):
        tick()
        assert sent_to(incident)[-1] == ("trigger", "twilio", "Bob <+14155550102>")


def test_a_stale_escalation_task_does_nothing(people: dict) -> None:
    api = monitor("api")
    fail(api)
    tick()
    incident = the_incident(api)
    with later(10.1):
        [(incident_id, token)] = services.due_escalations()
        assert services.escalate(incident_id, token) is True
        # The same task delivered twice (or fired by two ticks) is stale now.
        assert services.escalate(incident_id, token) is False
    assert len([row for row in sent_to(incident) if "Bob" in row[2]]) == 1


def test_the_policy_repeats_then_reminds_until_acknowledged(people: dict) -> None:
    ops = webhook_channel("pager-room")
    policy(
        "critical",
        default_for="critical",
        steps=[{"delay_minutes": 0, "channels": [ops]}],
        repeat=2,
        repeat_after_minutes=5,
        reminder_minutes=30,
    )
    db = monitor("db", severity="critical")
    fail(db)
    tick()
    incident = the_incident(db)
    Notification.objects.filter(incident=incident).update(status="sent")
    with later(5.1):
        tick()
    assert len(sent_to(incident, event="trigger")) == 2  # the policy ran a second time
    Notification.objects.filter(incident=incident).update(status="sent")
    with later(20):
        tick()
    assert sent_to(incident, event="reminder") == []
    with later(35.2):
        tick()
    assert sent_to(incident, event="reminder") == [("reminder", "webhook", "pager-room")]
    with later(66):
        tick()
    assert len(sent_to(incident, event="reminder")) == 2


def test_no_policy_for_the_severity_records_that_nobody_was_paged() -> None:
    api = monitor("api", severity="low")
    fail(api)
    tick()
    incident = the_incident(api)
    assert Notification.objects.count() == 0
    assert (
        "nobody paged: no escalation policy (or no steps) for severity low" in timeline(incident)[1]
    )


def test_a_monitor_may_name_its_own_policy(people: dict) -> None:
    special = webhook_channel("db-team")
    own = policy("database team", default_for="", steps=[{"channels": [special]}])
    db = monitor("db")
    own.monitors.add(db)
    fail(db)
    tick()
    assert sent_to(the_incident(db)) == [("trigger", "webhook", "db-team")]


def test_a_manual_incident_pages_by_its_severity(people: dict) -> None:
    incident = services.open_manual_incident("Payments degraded at the provider", "high", "Dana")
    assert incident.monitor is None
    assert ("trigger", "webhook", "ops") in sent_to(incident)
    assert timeline(incident)[0] == "opened: declared by Dana"
