"""One root cause, one page: dependencies, maintenance windows, and incident storms."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.utils import timezone

from alerts.models import Notification
from alerts.transports.base import Message
from checks.models import Tag
from incidents.models import Incident, Maintenance
from tests.incidents.paging import (
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
def ops() -> object:
    channel = webhook_channel("ops")
    policy("default", steps=[{"channels": [channel]}])
    return channel


def test_a_child_of_a_down_parent_is_recorded_as_suppressed_not_paged(ops: object) -> None:
    router = monitor("router")
    app = monitor("app", depends_on=router)
    fail(router, "no route to host")
    tick()
    fail(app, "timed out after 10 s")
    tick()
    child = the_incident(app)
    assert child.suppression == "dependency" and child.suppressed_by == router
    assert "suppressed: not paged: its parent router is down" in timeline(child)
    assert sent_to(child) == []
    assert len(sent_to(the_incident(router))) == 1  # one root cause, one page


def test_a_child_that_failed_first_stops_paging_when_its_parent_goes_down(ops: object) -> None:
    router = monitor("router")
    app = monitor("app", depends_on=router)
    fail(app)
    tick()
    child = the_incident(app)
    assert len(sent_to(child)) == 1  # paged: the parent looked fine then
    fail(router)
    tick()
    child.refresh_from_db()
    assert child.suppression == "dependency"
    assert child.next_escalation_at is None


def test_a_suppressed_child_still_down_after_its_parent_recovers_pages(ops: object) -> None:
    router = monitor("router")
    app = monitor("app", depends_on=router)
    fail(router)
    fail(app)
    tick()
    assert sent_to(the_incident(app)) == []
    flip(router, "up")
    tick()
    child = the_incident(app)
    assert child.suppression == ""
    assert sent_to(child) == [("trigger", "webhook", "ops")]
    assert any(line.startswith("unsuppressed") for line in timeline(child))


def test_a_maintenance_window_suppresses_paging_and_says_so(ops: object) -> None:
    db = monitor("db")
    now = timezone.now()
    window = Maintenance.objects.create(
        title="Postgres upgrade",
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(hours=1),
    )
    window.monitors.add(db)
    fail(db)
    tick()
    incident = the_incident(db)
    assert incident.suppression == "maintenance"
    assert sent_to(incident) == []
    assert "Postgres upgrade" in timeline(incident)[-1]
    # Still down after the window: paging starts.
    with time_machine.travel(now + timedelta(hours=1, minutes=1), tick=False):
        tick()
    assert sent_to(incident) == [("trigger", "webhook", "ops")]


def test_a_weekly_window_by_tag_in_its_own_timezone(ops: object) -> None:
    batch = Tag.objects.create(name="batch")
    etl = monitor("etl")
    etl.tags.add(batch)
    window = Maintenance.objects.create(
        title="nightly ETL",
        recurrence="weekly",
        weekdays=[6],  # Sundays
        start_time=time(2, 0),
        duration_minutes=120,
        timezone="Europe/Berlin",
        starts_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    window.tags.add(batch)
    # Sunday 2026-11-22 03:30 in Berlin (02:30 UTC): inside.
    with time_machine.travel(datetime(2026, 11, 22, 2, 30, tzinfo=UTC), tick=False):
        fail(etl)
        tick()
        assert the_incident(etl).suppression == "maintenance"
        flip(etl, "up")
        tick()
    # Monday 03:30 Berlin: outside, pages.
    with time_machine.travel(datetime(2026, 11, 23, 2, 30, tzinfo=UTC), tick=False):
        fail(etl)
        tick()
        latest = Incident.objects.filter(monitor=etl).order_by("-id").first()
        assert latest.suppression == "" and len(sent_to(latest)) == 1


def test_a_cron_window_validates_and_applies(ops: object) -> None:
    bad = Maintenance(title="x", recurrence="cron", cron="every sunday", starts_at=timezone.now())
    with pytest.raises(Exception) as caught:
        bad.full_clean()
    assert "cron" in caught.value.message_dict
    assert "'every sunday' is not a cron expression" in caught.value.message_dict["cron"][0]
    once = Maintenance(title="y", starts_at=timezone.now())
    with pytest.raises(Exception) as caught:
        once.full_clean()
    assert caught.value.message_dict["ends_at"] == ["a one-off window needs an end"]


def test_two_hundred_monitors_down_at_once_send_grouped_messages_within_the_rate_limit(
    settings, ops: object
) -> None:
    settings.STORM_THRESHOLD = 10
    monitors = [monitor(f"edge-{n:03}") for n in range(200)]
    # All within one minute (a slow machine must not split the storm in two).
    with time_machine.travel(datetime(2026, 11, 22, 12, 0, 5, tzinfo=UTC), tick=False):
        for mon in monitors:
            fail(mon, "connection refused")
        tick()
        now = timezone.now()
    assert Incident.objects.count() == 200
    rows = list(Notification.objects.filter(channel=ops).order_by("id"))
    singles = [row for row in rows if row.event == "trigger"]
    grouped = [row for row in rows if row.event == "grouped"]
    # The first incidents page one by one; once more than STORM_THRESHOLD open
    # within a minute, the rest join one grouped message for the minute.
    assert len(singles) == settings.STORM_THRESHOLD
    assert len(grouped) == 1
    assert len(rows) <= ops.rate_limit
    message = Message.from_dict(grouped[0].message)
    assert len(message.incidents) == 200 - settings.STORM_THRESHOLD
    assert message.summary.startswith("190 incidents opened: edge-010, edge-011")
    assert grouped[0].not_before == now + timedelta(seconds=55)  # the rest of the minute
