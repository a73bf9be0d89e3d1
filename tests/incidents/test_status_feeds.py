"""What the public reads without a browser: Atom/RSS feeds, the Statuspage-shaped API, badges."""

from __future__ import annotations

import copy
import json
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client

from checks.models import Monitor, Rollup
from incidents.models import (
    Component,
    ComponentGroup,
    Maintenance,
    PublicIncident,
    PublicUpdate,
    StatusPage,
)
from tests.incidents.paging import monitor

pytestmark = pytest.mark.django_db

HOST = "status.acme.test"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & Co'
SECRETS = ("internal-db-primary", "hunter2", "10.0.3.7", "connection refused", "/admin/")


@pytest.fixture(autouse=True)
def status_host(settings: Any) -> None:
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, HOST]
    settings.SITE_URL = "https://watchpost.acme.test"
    settings.STATUS_PAGE_REFRESH_GRACE = 0  # changes show on the next request (no worker here)
    # A key prefix of this test's own: the test Redis is shared with other runs.
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture
def page() -> StatusPage:
    return StatusPage.objects.create(title="Acme status", host=HOST, timezone="Europe/Berlin")


def get(path: str, **headers: Any) -> Any:
    return Client().get(path, HTTP_HOST=HOST, **headers)


def component(page: StatusPage, name: str, *monitors: Monitor, **fields: Any) -> Component:
    made = Component.objects.create(page=page, name=name, **fields)
    made.monitors.set(monitors)
    return made


def incident(
    page: StatusPage, title: str, *updates: tuple[str, str], published: bool = True, **fields: Any
) -> PublicIncident:
    made = PublicIncident.objects.create(
        page=page,
        title=title,
        published_at=NOW - timedelta(hours=3) if published else None,
        created_at=NOW - timedelta(hours=3),
        status=updates[-1][0] if updates else "investigating",
        **fields,
    )
    for n, (status, body) in enumerate(updates):
        PublicUpdate.objects.create(
            incident=made, status=status, body=body, created_at=NOW - timedelta(hours=2 - n)
        )
    return made


def secret_monitor(status: str = "down") -> Monitor:
    return monitor(
        "internal-db-primary",
        status=status,
        target="postgres://admin:hunter2@10.0.3.7:5432/prod",
        last_reason="connection refused by 10.0.3.7",
    )


# --- Feeds ------------------------------------------------------------------------------


def test_the_atom_feed_has_one_entry_per_update_newest_first(page: StatusPage) -> None:
    outage = incident(
        page,
        "Elevated errors",
        ("investigating", "Looking into it."),
        ("resolved", "Fixed.\n\nSorry."),
        resolved_at=NOW - timedelta(hours=1),
    )
    incident(page, "Draft only", ("investigating", "not yet public"), published=False)
    response = get("/feed.atom")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/atom+xml")
    assert response["Cache-Control"] == "public, max-age=60"
    feed = ET.fromstring(response.content)
    assert feed.findtext(f"{ATOM}title") == "Acme status — incidents"
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == [
        "Elevated errors — Resolved",
        "Elevated errors — Investigating",
    ]
    first = entries[0]
    link = f"https://{HOST}/incidents/{outage.pk}/#update-"
    assert first.find(f"{ATOM}link").get("href").startswith(link)
    assert first.findtext(f"{ATOM}id") == first.find(f"{ATOM}link").get("href")
    assert "<p>Fixed.</p>" in first.findtext(f"{ATOM}summary")
    assert "not yet public" not in response.content.decode()
    # Stable ids: the same entries read again have the same ids.
    again = ET.fromstring(get("/feed.atom").content)
    assert [e.findtext(f"{ATOM}id") for e in again.findall(f"{ATOM}entry")] == [
        e.findtext(f"{ATOM}id") for e in entries
    ]


def test_the_rss_feed_lists_the_same_updates(page: StatusPage) -> None:
    incident(page, "Slow logins", ("identified", "A cache node is down."))
    response = get("/feed.rss")
    assert response["Content-Type"].startswith("application/rss+xml")
    channel = ET.fromstring(response.content).find("channel")
    assert channel.findtext("link") == f"https://{HOST}/"
    [item] = channel.findall("item")
    assert item.findtext("title") == "Slow logins — Identified"
    assert item.findtext("guid") == item.findtext("link")
    assert "A cache node is down." in item.findtext("description")


def test_hostile_titles_and_bodies_are_escaped_in_the_feeds(page: StatusPage) -> None:
    incident(page, HOSTILE, ("investigating", f"Body {HOSTILE}"))
    for path, title_path, body_path in (
        ("/feed.atom", f"{ATOM}entry/{ATOM}title", f"{ATOM}entry/{ATOM}summary"),
        ("/feed.rss", "channel/item/title", "channel/item/description"),
    ):
        raw = get(path).content
        assert b"<script>" not in raw
        feed = ET.fromstring(raw)  # still well-formed XML
        assert feed.findtext(title_path) == f"{HOSTILE} — Investigating"
        # The summary is HTML: the body's markup is text in it, not markup.
        assert "&lt;script&gt;" in feed.findtext(body_path)


# --- The JSON API -------------------------------------------------------------------------


def test_summary_json_reads_like_statuspage(page: StatusPage) -> None:
    edge = ComponentGroup.objects.create(page=page, name="Edge", position=1)
    api = component(page, "API", monitor("api", status="up"), description="Public REST API")
    cdn = component(page, "CDN", monitor("cdn", status="down"), group=edge, position=1)
    open_one = incident(
        page, "CDN outage", ("investigating", "Looking."), ("monitoring", "Fix deployed."),
        impact="major",
    )  # fmt: skip
    open_one.components.add(cdn)
    incident(page, "Old", ("resolved", "Done."), resolved_at=NOW - timedelta(hours=1))
    incident(page, "Draft", ("investigating", "secret draft"), published=False)
    upgrade = Maintenance.objects.create(
        title="DB upgrade", public=True, public_description="Read-only for 10 minutes.",
        starts_at=NOW + timedelta(days=1), ends_at=NOW + timedelta(days=1, hours=1),
    )  # fmt: skip
    upgrade.components.add(api)
    with time_machine.travel(NOW, tick=False):
        response = get("/api/v2/summary.json")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    data = response.json()
    assert set(data) == {"page", "status", "components", "incidents", "scheduled_maintenances"}
    assert data["page"] == {
        "id": str(page.pk),
        "name": "Acme status",
        "url": f"https://{HOST}",
        "time_zone": "Europe/Berlin",
        "updated_at": NOW.isoformat(),
    }
    assert data["status"] == {"indicator": "critical", "description": "Major System Outage"}

    by_name = {c["name"]: c for c in data["components"]}
    assert by_name["API"] == {
        "id": str(api.pk),
        "name": "API",
        "status": "operational",
        "created_at": api.created_at.isoformat(),
        "updated_at": by_name["API"]["updated_at"],
        "position": 0,
        "description": "Public REST API",
        "showcase": True,
        "start_date": api.created_at.date().isoformat(),
        "group_id": None,
        "page_id": str(page.pk),
        "group": False,
        "only_show_if_degraded": False,
    }
    assert by_name["CDN"]["status"] == "major_outage"
    assert by_name["CDN"]["group_id"] == by_name["Edge"]["id"]
    assert by_name["Edge"]["group"] is True
    assert by_name["Edge"]["components"] == [str(cdn.pk)]
    assert by_name["Edge"]["status"] == "major_outage"

    [shown] = data["incidents"]
    assert shown["id"] == str(open_one.pk) and shown["name"] == "CDN outage"
    assert (shown["status"], shown["impact"]) == ("monitoring", "major")
    assert shown["shortlink"] == f"https://{HOST}/incidents/{open_one.pk}/"
    assert [u["body"] for u in shown["incident_updates"]] == ["Fix deployed.", "Looking."]
    assert all(u["incident_id"] == str(open_one.pk) for u in shown["incident_updates"])
    assert [c["name"] for c in shown["components"]] == ["CDN"]

    [window] = data["scheduled_maintenances"]
    assert (window["name"], window["status"], window["impact"]) == (
        "DB upgrade",
        "scheduled",
        "maintenance",
    )
    assert window["scheduled_for"] == (NOW + timedelta(days=1)).isoformat()
    assert window["incident_updates"][0]["body"] == "Read-only for 10 minutes."
    assert [c["name"] for c in window["components"]] == ["API"]


def test_status_json_holds_the_page_and_its_indicator(page: StatusPage) -> None:
    component(page, "API", monitor("api", status="up"))
    response = get("/api/v2/status.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "max-age=30" in response["Cache-Control"]
    data = response.json()
    assert set(data) == {"page", "status"}
    assert data["status"] == {"indicator": "none", "description": "All Systems Operational"}


def test_the_api_answers_cors_preflights_and_only_reads(page: StatusPage) -> None:
    client = Client()
    preflight = client.options(
        "/api/v2/summary.json",
        HTTP_HOST=HOST,
        HTTP_ORIGIN="https://widgets.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="X-Requested-With",
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "GET" in preflight["Access-Control-Allow-Methods"]
    assert preflight["Access-Control-Allow-Headers"] == "X-Requested-With"
    assert int(preflight["Access-Control-Max-Age"]) > 0

    posted = client.post("/api/v2/status.json", {}, HTTP_HOST=HOST)
    assert posted.status_code == 405
    assert "POST" not in posted["Allow"] and "GET" in posted["Allow"]
    assert posted["Access-Control-Allow-Origin"] == "*"


def test_an_update_shows_in_the_api_and_the_feed_at_once(page: StatusPage) -> None:
    from incidents.statuspage.publishing import post_update

    assert get("/api/v2/summary.json").json()["incidents"] == []
    draft = PublicIncident.objects.create(page=page, title="Login errors")
    post_update(draft, "investigating", "We are on it.", "ann")
    [shown] = get("/api/v2/summary.json").json()["incidents"]
    assert shown["incident_updates"][0]["body"] == "We are on it."
    assert b"We are on it." in get("/feed.atom").content


def test_another_host_gets_no_page() -> None:
    assert get("/api/v2/status.json").status_code == 404


# --- Badges -------------------------------------------------------------------------------


def badge(path: str) -> tuple[Any, ET.Element]:
    response = get(path)
    assert response.status_code == 200, response.content
    return response, ET.fromstring(response.content)


def texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text")]


def fills(svg: ET.Element) -> list[str]:
    return [r.get("fill") or "" for r in svg.iter(f"{SVG}rect")]


@pytest.mark.parametrize(
    ("statuses", "override", "message", "colour"),
    [
        (["up"], "", "operational", "#4c1"),
        (["degraded"], "", "degraded performance", "#dfb317"),
        (["up", "down"], "", "partial outage", "#fe7d37"),
        (["down"], "", "major outage", "#e05d44"),
        (["up"], "under_maintenance", "under maintenance", "#007ec6"),
    ],
)
def test_the_status_badge_says_and_colours_the_state(
    page: StatusPage, statuses: list[str], override: str, message: str, colour: str
) -> None:
    monitors = [monitor(f"m{n}", status=s) for n, s in enumerate(statuses)]
    api = component(page, "API", *monitors, status_override=override)
    response, svg = badge(f"/badge/{api.pk}/status.svg")
    assert response["Content-Type"].startswith("image/svg+xml")
    assert response["Cache-Control"] == "public, max-age=60"
    assert svg.tag == f"{SVG}svg"
    assert texts(svg) == ["API", "API", message, message]
    assert colour in fills(svg)


def test_badge_names_are_escaped_and_widths_follow_the_text(page: StatusPage) -> None:
    short = component(page, "DB")
    hostile = component(page, HOSTILE)
    response, svg = badge(f"/badge/{hostile.pk}/status.svg")
    assert b"<script>" not in response.content
    assert texts(svg)[0] == HOSTILE
    assert svg.findtext(f"{SVG}title") == f"{HOSTILE}: operational"
    _, narrow = badge(f"/badge/{short.pk}/status.svg")
    assert int(svg.get("width")) > int(narrow.get("width")) + 100


def test_the_uptime_badge_reads_the_window(page: StatusPage) -> None:
    api_monitor = monitor("api", status="up")
    api = component(page, "API", api_monitor)
    Rollup.objects.create(
        monitor=api_monitor, period="hour", bucket_start=NOW - timedelta(hours=2),
        total=10_000, ok=9_995, failing=5,
    )  # fmt: skip
    Rollup.objects.create(
        monitor=api_monitor, period="hour", bucket_start=NOW - timedelta(days=20),
        total=10_000, ok=9_000, failing=1_000,
    )  # fmt: skip
    # The days those hours fall in, as the rollup job writes them (long windows read days).
    for hours, ok in (((NOW - timedelta(hours=2)), 9_995), (NOW - timedelta(days=20), 9_000)):
        Rollup.objects.create(
            monitor=api_monitor, period="day", bucket_start=hours.replace(hour=0, minute=0),
            total=10_000, ok=ok, failing=10_000 - ok,
        )  # fmt: skip
    with time_machine.travel(NOW, tick=False):
        _, day = badge(f"/badge/{api.pk}/uptime.svg?window=24h")
        _, month = badge(f"/badge/{api.pk}/uptime.svg")  # 30 days by default
    assert texts(day)[2:] == ["99.95%", "99.95%"]
    assert "#4c1" in fills(day)
    assert texts(month)[2:] == ["94.97%", "94.97%"]
    assert "#fe7d37" in fills(month)


def test_the_uptime_badge_refuses_an_unknown_window_naming_it(page: StatusPage) -> None:
    api = component(page, "API")
    response = get(f"/badge/{api.pk}/uptime.svg?window=1y")
    assert response.status_code == 400
    assert response.content.decode().startswith("window: ")
    _, svg = badge(f"/badge/{api.pk}/uptime.svg?window=7d")
    assert texts(svg)[2] == "no data"


def test_badges_of_other_pages_or_hidden_uptime_are_not_found(page: StatusPage) -> None:
    other = StatusPage.objects.create(title="Other", host="status.other.test")
    elsewhere = component(other, "Billing")
    hidden = component(page, "Internal", show_uptime=False)
    assert get(f"/badge/{elsewhere.pk}/status.svg").status_code == 404
    assert get(f"/badge/{hidden.pk}/uptime.svg").status_code == 404
    assert get("/badge/999999/status.svg").status_code == 404


# --- Privacy ------------------------------------------------------------------------------


def test_nothing_private_appears_in_the_api_feeds_or_badges(page: StatusPage) -> None:
    db = component(page, "Database", secret_monitor())
    public = incident(page, "Database trouble", ("investigating", "Looking into it."))
    public.components.add(db)
    for path in (
        "/api/v2/summary.json",
        "/api/v2/status.json",
        "/feed.atom",
        "/feed.rss",
        f"/badge/{db.pk}/status.svg",
        f"/badge/{db.pk}/uptime.svg",
    ):
        response = get(path)
        assert response.status_code == 200, path
        text = response.content.decode()
        for secret in SECRETS:
            assert secret not in text, (path, secret)
    summary = json.loads(get("/api/v2/summary.json").content)
    assert [c["name"] for c in summary["components"]] == ["Database"]
