"""What the status page says, from monitors, rollups, public incidents and maintenance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from checks.models import Rollup
from incidents.models import Component, Maintenance, PublicIncident, PublicUpdate, StatusPage
from incidents.statuspage.derive import page_snapshot
from tests.incidents.paging import monitor

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def page() -> StatusPage:
    return StatusPage.objects.create(
        title="Acme status", host="status.acme.test", timezone="Europe/Berlin"
    )


def component(page: StatusPage, name: str, *monitors: object, **fields: object) -> Component:
    made = Component.objects.create(page=page, name=name, **fields)
    made.monitors.set(monitors)
    return made


def statuses(snapshot: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in snapshot["components"]}


def test_components_follow_their_monitors_and_the_page_shows_the_worst(page: StatusPage) -> None:
    a, b = monitor("api-eu", status="up"), monitor("api-us", status="up")
    c = monitor("db", status="degraded")
    d1, d2 = monitor("cdn-1", status="down"), monitor("cdn-2", status="down")
    component(page, "API", a, b)
    component(page, "Database", c)
    component(page, "CDN", d1, d2)
    component(page, "Docs")  # no monitors: operational
    with time_machine.travel(NOW, tick=False):
        snap = page_snapshot(page)
    assert statuses(snap) == {
        "API": "operational",
        "Database": "degraded_performance",
        "CDN": "major_outage",
        "Docs": "operational",
    }
    assert snap["status"] == {"indicator": "critical", "description": "Major System Outage"}
    b.status = "down"
    b.save()
    d1.status = "up"
    d1.save()
    with time_machine.travel(NOW, tick=False):
        snap = page_snapshot(page)
    assert statuses(snap)["API"] == "partial_outage"
    assert statuses(snap)["CDN"] == "partial_outage"
    assert snap["status"]["description"] == "Partial System Outage"


def test_an_override_wins_and_maintenance_shows_under_maintenance(page: StatusPage) -> None:
    db = monitor("db", status="down")
    database = component(page, "Database", db)
    api = component(
        page, "API", monitor("api", status="down"), status_override="degraded_performance"
    )
    window = Maintenance.objects.create(
        title="upgrade", starts_at=NOW - timedelta(hours=1), ends_at=NOW + timedelta(hours=1)
    )
    window.components.add(database)
    with time_machine.travel(NOW, tick=False):
        snap = page_snapshot(page)
    assert statuses(snap) == {"API": "degraded_performance", "Database": "under_maintenance"}
    assert api.pk in [c["id"] for c in snap["components"]]


def test_all_operational_reads_so(page: StatusPage) -> None:
    component(page, "API", monitor("api", status="up"))
    with time_machine.travel(NOW, tick=False):
        snap = page_snapshot(page)
    assert snap["status"] == {"indicator": "none", "description": "All Systems Operational"}


def test_uptime_bars_come_from_rollups_in_the_pages_days(page: StatusPage) -> None:
    api = monitor("api", status="up")
    component(page, "API", api)
    # 2026-11-21 23:30 UTC is already the 22nd in Berlin.
    Rollup.objects.create(
        monitor=api,
        period="hour",
        bucket_start=datetime(2026, 11, 21, 23, 0, tzinfo=UTC),
        total=100,
        ok=90,
        failing=10,
    )
    Rollup.objects.create(
        monitor=api,
        period="hour",
        bucket_start=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
        total=100,
        ok=100,
    )
    with time_machine.travel(NOW, tick=False):
        snap = page_snapshot(page)
    days = {d["date"]: d["uptime"] for d in snap["components"][0]["days"]}
    assert len(days) == 90
    assert days["2026-11-22"] == 90.0
    assert days["2026-11-20"] == 100.0
    assert days["2026-11-21"] is None  # no data that day
    assert snap["components"][0]["uptime"]["24h"] == 90.0
    assert snap["components"][0]["uptime"]["7d"] == 95.0


def test_published_incidents_raise_the_indicator_and_drafts_stay_hidden(page: StatusPage) -> None:
    api = component(page, "API", monitor("api", status="up"))
    draft = PublicIncident.objects.create(
        page=page, title="draft", impact="critical", created_at=NOW
    )
    live = PublicIncident.objects.create(
        page=page,
        title="Elevated errors",
        impact="major",
        created_at=NOW - timedelta(hours=2),
        published_at=NOW,
    )
    live.components.add(api)
    PublicUpdate.objects.create(
        incident=live, status="investigating", body="We are looking into it.", created_at=NOW
    )
    with time_machine.travel(NOW, tick=False):
        snap = page_snapshot(page)
    assert [i["title"] for i in snap["incidents"]] == ["Elevated errors"]
    assert snap["status"] == {"indicator": "major", "description": "Partial System Outage"}
    today = snap["components"][0]["days"][-1]
    assert today["incidents"] == ["Elevated errors"]
    assert draft.pk not in [i["id"] for i in snap["incidents"]]


def test_nothing_private_leaks_into_the_snapshot(page: StatusPage) -> None:
    secret = monitor(
        "internal-db-primary",
        status="down",
        target="postgres://admin:hunter2@10.0.3.7:5432/prod",
        last_reason="connection refused by 10.0.3.7",
    )
    component(page, "Database", secret)
    with time_machine.travel(NOW, tick=False):
        text = json.dumps(page_snapshot(page))
    for private in ("internal-db-primary", "hunter2", "10.0.3.7", "connection refused"):
        assert private not in text


def test_public_maintenance_is_listed_as_upcoming_in_progress_or_completed(
    page: StatusPage,
) -> None:
    api = component(page, "API", monitor("api", status="up"))
    for title, start in (("past", -30), ("now", -1), ("soon", 24)):
        window = Maintenance.objects.create(
            title=title,
            public=True,
            public_description=f"{title} work",
            starts_at=NOW + timedelta(hours=start),
            ends_at=NOW + timedelta(hours=start + 2),
        )
        window.components.add(api)
    hidden = Maintenance.objects.create(
        title="internal", starts_at=NOW + timedelta(hours=5), ends_at=NOW + timedelta(hours=6)
    )
    hidden.components.add(api)
    with time_machine.travel(NOW, tick=False):
        snap = page_snapshot(page)["maintenances"]
    assert [m["title"] for m in snap["completed"]] == ["past"]
    assert [m["title"] for m in snap["in_progress"]] == ["now"]
    assert [m["title"] for m in snap["upcoming"]] == ["soon"]


def test_a_page_in_the_servers_timezone_reads_daily_rollups(settings) -> None:
    page = StatusPage.objects.create(title="UTC page", host="status.utc.test", timezone="UTC")
    assert settings.TIME_ZONE == "UTC"
    api = monitor("api", status="up")
    component(page, "API", api)
    Rollup.objects.create(
        monitor=api,
        period="day",
        bucket_start=datetime(2026, 11, 20, tzinfo=UTC),
        total=1000,
        ok=990,
        failing=10,
    )
    Rollup.objects.create(
        monitor=api,
        period="day",
        bucket_start=datetime(2026, 11, 1, tzinfo=UTC),
        total=1000,
        ok=1000,
    )
    with time_machine.travel(NOW, tick=False):
        snap = page_snapshot(page)
    days = {d["date"]: d["uptime"] for d in snap["components"][0]["days"]}
    assert days["2026-11-20"] == 99.0
    assert snap["components"][0]["uptime"]["30d"] == 99.5
