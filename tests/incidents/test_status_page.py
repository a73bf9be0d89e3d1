"""The public status page: routed by host, server-rendered without script, escaped, cached."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from checks.models import Monitor, Rollup
from checks.signals import announce_status_changes
from incidents.models import (
    Component,
    ComponentGroup,
    Incident,
    Maintenance,
    PublicIncident,
    PublicUpdate,
    StatusPage,
)
from incidents.statuspage import cache as status_cache
from tests.incidents import status_fixtures as scenes
from tests.incidents.paging import flip

pytestmark = pytest.mark.django_db

HOST = scenes.HOST
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
]
NOW = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def status_host(settings: Any) -> Iterator[None]:
    scenes.allow_host(settings)
    scenes.allow_host(settings, "status.other.test")
    scenes.render_in_request(settings)
    forget = scenes.isolate_cache(settings)
    yield
    forget()


def get(client: Client, path: str = "/", host: str = HOST, **headers: Any) -> Any:
    return client.get(path, headers={"host": host, **headers})


def html(client: Client, path: str = "/", host: str = HOST) -> str:
    response = get(client, path, host)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


class Elements(HTMLParser):
    """Every start tag with its attributes, in order, and the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


def bar_groups(text: str) -> dict[str, list[str]]:
    """Each component's uptime bars: the labels of its days, oldest first."""
    groups: dict[str, list[str]] = {}
    current = None
    for tag, attrs in Elements(text).tags:
        if tag == "div" and "bars" in attrs.get("class", "").split():
            current = attrs["aria-label"].split(": uptime each day")[0]
            groups[current] = []
        elif tag == "span" and attrs.get("role") == "img" and current is not None:
            # Keyboard users tab to the days worth a look, not to 90 green ones.
            noteworthy = attrs.get("class") not in ("ok", "none")
            assert attrs.get("tabindex") == ("0" if noteworthy else None)
            groups[current].append(attrs["aria-label"])
    return groups


class Components(HTMLParser):
    """Component name → the status it shows, from each <li class="component">."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: dict[str, str] = {}
        self.reading: str | None = None  # "name" or "state"
        self.name = self.buffer = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "h3" and "component-name" in classes:
            self.reading, self.buffer = "name", ""
        elif tag == "span" and "state" in classes and self.name:
            self.reading, self.buffer = "state", ""

    def handle_endtag(self, tag: str) -> None:
        if self.reading == "name" and tag == "h3":
            self.name, self.reading = self.buffer.strip(), None
        elif self.reading == "state" and tag == "span" and self.buffer.strip():
            self.found[self.name] = self.buffer.strip()
            self.name, self.reading = "", None

    def handle_data(self, data: str) -> None:
        if self.reading:
            self.buffer += data


def statuses(text: str) -> dict[str, str]:
    return Components(text).found


# --- Routing --------------------------------------------------------------------------------


def test_it_serves_the_page_at_its_host_and_nowhere_else(client: Client) -> None:
    scenes.operational_scene()
    page = html(client)
    assert "Acme Status" in page
    assert "All Systems Operational" in page
    assert "Acme Status" in html(client, host=f"{HOST}:8443")  # with a port, too
    # The admin's host gets the admin's site, and the status host no admin.
    assert get(client, "/", host="testserver").status_code == 404
    assert get(client, "/history/", host="testserver").status_code == 404
    assert get(client, "/admin/login/", host="testserver").status_code == 200
    assert get(client, "/admin/login/").status_code == 404
    head = client.head("/", headers={"host": HOST})
    assert head.status_code == 200 and int(head["Content-Length"]) == len(page.encode())
    assert get(client, "/history")["Location"] == "/history/"  # CommonMiddleware still applies


def test_an_unknown_host_is_refused_as_django_refuses_it(client: Client) -> None:
    scenes.operational_scene()
    assert get(client, host="evil.example").status_code == 400


def test_each_page_answers_at_its_own_host(client: Client) -> None:
    scenes.operational_scene()
    other = StatusPage.objects.create(title="Other Corp", host="status.other.test")
    Component.objects.create(page=other, name="Billing")
    theirs = html(client, host="status.other.test")
    assert "Other Corp" in theirs and "Billing" in theirs
    assert "Webhooks" not in theirs
    assert "Billing" not in html(client)


def test_the_admins_own_host_is_never_taken_by_a_page(client: Client, settings: Any) -> None:
    admin_host = urlsplit(django_settings.SITE_URL).netloc
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, admin_host]
    StatusPage.objects.create(title="Oops", host=admin_host)
    response = get(client, "/admin/login/", host=admin_host)
    assert response.status_code == 200
    assert b"Oops" not in response.content


def test_the_page_moves_with_its_host(client: Client, settings: Any) -> None:
    scene = scenes.operational_scene()
    assert get(client).status_code == 200
    scene.page.host = "status.other.test"
    scene.page.save()
    assert get(client).status_code == 404  # nothing is served at the old host any more
    assert "Acme Status" in html(client, host="status.other.test")


# --- What the page says -----------------------------------------------------------------------


def test_all_operational(client: Client) -> None:
    scenes.operational_scene()
    page = html(client)
    assert "All Systems Operational" in page
    assert "banner-none" in page
    assert set(statuses(page).values()) == {"Operational"}
    assert list(statuses(page)) == [
        "API",
        "Dashboard",
        "Webhooks",
        "CDN",
        "Database",
        "Documentation",
    ]
    assert page.index("Core services") < page.index("Infrastructure") < page.index("Documentation")
    assert "No incidents in the past 7 days." in page


def test_an_outage_with_a_published_incident(client: Client) -> None:
    scene = scenes.outage_scene()
    page = html(client)
    assert "Major System Outage" in page
    assert statuses(page) == {
        "API": "Partial outage",
        "Dashboard": "Operational",
        "Webhooks": "Major outage",
        "CDN": "Operational",
        "Database": "Operational",
        "Documentation": "Operational",
    }
    active = page.split("Active incidents", 1)[1].split("Current status", 1)[0]
    assert scene.incident is not None and scene.incident.title in active
    assert "Affects API, Webhooks" in active
    # The timeline, newest first.
    assert active.index("Identified") < active.index("A failed network switch")
    assert active.index("A failed network switch") < active.index("Investigating")
    assert f'href="/incidents/{scene.incident.pk}/"' in active


def test_a_maintenance_window(client: Client) -> None:
    scenes.maintenance_scene()
    page = html(client)
    assert "Service Under Maintenance" in page
    assert statuses(page)["Database"] == "Under maintenance"
    assert statuses(page)["API"] == "Operational"
    running = page.split("Maintenance in progress", 1)[1].split("Current status", 1)[0]
    assert "Database upgrade" in running and "upgrading the database cluster" in running
    upcoming = page.split("Scheduled maintenance", 1)[1]
    assert "CDN provider migration" in upcoming and "Affects CDN" in upcoming


def test_an_override_wins_over_the_monitors(client: Client) -> None:
    scene = scenes.operational_scene()
    cdn = scene.components["CDN"]
    cdn.status_override = "degraded_performance"
    cdn.save()
    page = html(client)
    assert statuses(page)["CDN"] == "Degraded performance"
    assert "Degraded System Performance" in page


def test_ninety_uptime_bars_tell_their_day_uptime_and_incidents(client: Client) -> None:
    with time_machine.travel(NOW, tick=False):
        scene = scenes.outage_scene(NOW)
        docs = scene.monitors["docs-site"]
        # A bad day for the docs 3 days ago (Berlin): 1,380 of 1,440 results good.
        day = datetime(2026, 11, 15, 11, 0, tzinfo=UTC)
        Rollup.objects.filter(monitor=docs, bucket_start__date=day.date()).update(
            ok=1380, failing=60
        )
        Component.objects.create(page=scene.page, name="Status emails", position=200)
        page = html(client)
    bars = bar_groups(page)
    assert set(bars) == {
        "API",
        "Dashboard",
        "Webhooks",
        "CDN",
        "Database",
        "Documentation",
        "Status emails",
    }
    assert all(len(days) == 90 for days in bars.values())
    assert bars["Documentation"][-4] == "Sun 15 Nov 2026: 95.83% uptime, no incidents"
    # One of the API's two monitors has failed for the last hour of today.
    assert bars["API"][-1] == (
        "Wed 18 Nov 2026: 92.30% uptime, incidents: Delayed webhook deliveries and API errors"
    )
    assert bars["Status emails"][0] == "Fri 21 Aug 2026: no data, no incidents"
    # Each window's uptime is printed too.
    assert all(
        f"<dt>{window}</dt>" in page for window in ("24 hours", "7 days", "30 days", "90 days")
    )


def test_a_component_can_show_its_response_times(client: Client) -> None:
    scenes.operational_scene()
    parser = Elements(html(client))
    charts = parser.find("svg", role="img")
    assert len(charts) == 2  # API and Dashboard ask for one
    assert len(parser.find("polyline", **{"class": "chart-line"})) == 2
    assert "Response time, last 24 hours" in "".join(parser.text)


def test_the_incident_page_shows_the_whole_timeline(client: Client) -> None:
    scene = scenes.outage_scene()
    assert scene.incident is not None
    PublicUpdate.objects.create(
        incident=scene.incident,
        status="monitoring",
        body="A fix is in place.\nWe are watching deliveries catch up.",
    )
    page = html(client, f"/incidents/{scene.incident.pk}/")
    assert "<h1>Delayed webhook deliveries and API errors</h1>" in page
    assert "Major impact" in page
    timeline = page.split("Updates</h2>", 1)[1]
    order = ["Monitoring", "A fix is in place.<br>We are watching", "Identified", "Investigating"]
    positions = [timeline.index(text) for text in order]
    assert positions == sorted(positions)
    assert "API, Webhooks" in page


def test_drafts_and_other_pages_incidents_are_not_found(client: Client) -> None:
    scene = scenes.outage_scene()
    draft = PublicIncident.objects.create(page=scene.page, title="Not yet")
    other = StatusPage.objects.create(title="Other Corp", host="status.other.test")
    theirs = PublicIncident.objects.create(page=other, title="Theirs", published_at=NOW)
    for pk in (draft.pk, theirs.pk, 999999):
        response = get(client, f"/incidents/{pk}/")
        assert response.status_code == 404
        assert b"Not found" in response.content
    assert "Not yet" not in html(client)


def test_the_history_lists_published_incidents_by_month(client: Client) -> None:
    with time_machine.travel(NOW, tick=False):
        scene = scenes.operational_scene(NOW)
        for title, days_ago, published in (
            ("Login failures", 3, True),
            ("Slow dashboard", 40, True),
            ("Secret draft", 10, False),
            ("Old outage", 120, True),
        ):
            incident = PublicIncident.objects.create(
                page=scene.page,
                title=title,
                status="resolved",
                created_at=NOW - timedelta(days=days_ago),
                resolved_at=NOW - timedelta(days=days_ago) + timedelta(hours=1),
                published_at=NOW - timedelta(days=days_ago) if published else None,
            )
            PublicUpdate.objects.create(
                incident=incident, status="resolved", body=f"{title} is over."
            )
        first = html(client, "/history/")
        second = html(client, "/history/?page=2")
        assert get(client, "/history/?page=x").status_code == 404
        assert get(client, "/history/?page=999").status_code == 404
    months = [first.index(m) for m in ("November 2026", "October 2026", "September 2026")]
    assert months == sorted(months)
    november = first.split("November 2026")[1].split("October 2026")[0]
    assert "Login failures" in november and "Login failures is over." in november
    assert "Slow dashboard" in first.split("October 2026")[1]
    assert "Secret draft" not in first + second
    assert "Old outage" not in first and "Old outage" in second.split("July 2026")[1]
    assert 'href="?page=2"' in first and 'href="?page=1"' in second
    assert "No incidents reported." in first  # September


def past_window(
    title: str, start: datetime, hours: float, *components: Component, **fields: Any
) -> Maintenance:
    fields.setdefault("public", True)
    fields.setdefault("ends_at", start + timedelta(hours=hours))
    window = Maintenance.objects.create(title=title, starts_at=start, **fields)
    window.components.set(components)
    return window


def test_the_history_shows_past_public_maintenance_among_the_incidents(client: Client) -> None:
    with time_machine.travel(NOW, tick=False):
        scene = scenes.operational_scene(NOW)
        db, cdn = scene.components["Database"], scene.components["CDN"]
        other = StatusPage.objects.create(title="Other Corp", host="status.other.test")
        billing = Component.objects.create(page=other, name="Billing")
        for title, days_ago in (("Login failures", 3), ("Slow dashboard", 13)):
            PublicIncident.objects.create(
                page=scene.page, title=title, status="resolved", published_at=NOW,
                created_at=NOW - timedelta(days=days_ago),
                resolved_at=NOW - timedelta(days=days_ago, hours=-1),
            )  # fmt: skip
        upgrade = past_window(
            "Database upgrade", datetime(2026, 11, 10, 2, 0, tzinfo=UTC), 1.5, db, billing,
            public_description="Upgrading the cluster to a new major version.",
        )  # fmt: skip
        upgrade.monitors.set([scene.monitors["prod-db-primary"]])
        past_window(HOSTILE[0], datetime(2026, 10, 20, 22, 0, tzinfo=UTC), 3, cdn)
        past_window(
            "Kernel patching", datetime(2026, 11, 12, 1, 0, tzinfo=UTC), 1, db, public=False
        )
        past_window("Their migration", datetime(2026, 11, 11, 1, 0, tzinfo=UTC), 1, billing)
        past_window("Still running", NOW - timedelta(hours=1), 2, cdn)
        past_window(
            "Weekly backups", datetime(2026, 9, 1, 1, 0, tzinfo=UTC), 0, db,
            recurrence="weekly", weekdays=[0, 3], start_time=datetime.min.time(),
            duration_minutes=60, ends_at=None,
        )  # fmt: skip
        past_window("Old network work", datetime(2026, 7, 1, 1, 0, tzinfo=UTC), 1, cdn)
        first = html(client, "/history/")
        second = html(client, "/history/?page=2")
    november = first.split("November 2026")[1].split("October 2026")[0]
    order = ["Login failures", "Database upgrade", "Slow dashboard"]  # newest first
    assert [november.index(title) for title in order] == sorted(november.index(t) for t in order)
    window = november.split("Database upgrade")[1].split("Slow dashboard")[0]
    assert "Maintenance" in window and "pill-maintenance" in window
    # Its times in the page's timezone, the page's own components, the public words only.
    assert '<time datetime="2026-11-10T03:00:00+01:00">Nov 10, 2026, 03:00 CET</time>' in window
    assert '<time datetime="2026-11-10T04:30:00+01:00">04:30</time>' in window
    assert "Affects Database<" in window and "Billing" not in first
    assert "Upgrading the cluster to a new major version." in window
    october = first.split("October 2026")[1].split("September 2026")[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in october and HOSTILE[0] not in first
    for hidden in ("Kernel patching", "Their migration", "Still running", "Weekly backups"):
        assert hidden not in first + second
    for private in scenes.PRIVATE:
        assert private not in first
    # Older maintenance alone is reason enough to offer the older page.
    assert 'href="?page=2"' in first and "Old network work" in second.split("July 2026")[1]


# --- Safety -------------------------------------------------------------------------------------


def hostile_scene() -> scenes.Scene:
    scene = scenes.outage_scene()
    page = scene.page
    page.title, page.description = HOSTILE
    page.support_url = "javascript:alert(1)"  # the admin refuses it; the page must too
    page.save()
    group = ComponentGroup.objects.create(page=page, name=HOSTILE[1], position=50)
    Component.objects.create(page=page, group=group, name=HOSTILE[0], description=HOSTILE[1])
    assert scene.incident is not None
    scene.incident.title = HOSTILE[1]
    scene.incident.save()
    PublicUpdate.objects.create(incident=scene.incident, status="monitoring", body=HOSTILE[0])
    window = Maintenance.objects.create(
        title=HOSTILE[0],
        public=True,
        public_description=HOSTILE[1],
        starts_at=NOW.replace(year=2030),
        ends_at=NOW.replace(year=2030) + timedelta(hours=1),
    )
    window.components.set([scene.components["CDN"]])
    return scene


def all_pages(client: Client, scene: scenes.Scene) -> list[str]:
    assert scene.incident is not None
    return [
        html(client),
        html(client, f"/incidents/{scene.incident.pk}/"),
        html(client, "/history/"),
    ]


def test_hostile_names_and_texts_are_escaped(client: Client) -> None:
    scene = hostile_scene()
    for page in all_pages(client, scene):
        for text in HOSTILE:
            assert text not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
        parser = Elements(page)
        assert not parser.find("script")
        assert "javascript:" not in page
        assert not [t for t, a in parser.tags if t == "img"]  # no logo set, so no image at all
        assert not [(t, k) for t, a in parser.tags for k in a if k.startswith("on")]
    bars = bar_groups(all_pages(client, scene)[0])
    assert HOSTILE[0] in bars  # the parser unescapes: the name is there, as text
    assert bars["API"][-1].endswith(f"incidents: {HOSTILE[1]}")


def test_it_works_without_javascript_and_allows_none(client: Client) -> None:
    scene = scenes.outage_scene()
    assert scene.incident is not None
    for path in ("/", f"/incidents/{scene.incident.pk}/", "/history/"):
        response = get(client, path)
        body = response.content.decode()
        assert "<script" not in body
        assert " style=" not in body  # inline styles would need 'unsafe-inline' too
        policy = dict(
            part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
        )
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'none'"
        assert policy["style-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'"
        assert "unsafe" not in response["Content-Security-Policy"]
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
        assert "Set-Cookie" not in response.headers
    assert "Content-Security-Policy" not in get(client, "/admin/login/", host="testserver")


def test_nothing_private_reaches_any_page(client: Client) -> None:
    scene = scenes.outage_scene()
    internal = Incident.objects.create(
        title="prod-api-eu-1 is down", reason="HTTP 503 from 10.0.3.7", opened_at=NOW
    )
    assert scene.incident is not None
    scene.incident.incident = internal
    scene.incident.save()
    for page in all_pages(client, scene):
        for private in scenes.PRIVATE:
            assert private not in page
        assert "/admin" not in page


def test_a_signed_in_visitor_gets_the_same_impersonal_page(
    client: Client, admin_client: Client
) -> None:
    scenes.operational_scene()
    theirs = get(admin_client)
    assert "Set-Cookie" not in theirs.headers
    assert b"csrfmiddlewaretoken" not in theirs.content and b"admin" not in theirs.content
    assert get(client).content == theirs.content


def test_the_page_links_its_feeds_and_offers_a_subscription(client: Client) -> None:
    scenes.operational_scene()
    parser = Elements(html(client))
    forms = parser.find("form", method="post")
    assert [f["action"] for f in forms] == ["/subscribe/"]
    assert parser.find("input", type="email", name="email")
    hrefs = {a.get("href") for t, a in parser.tags if t == "a"}
    assert {"/feed.atom", "/feed.rss", "/history/"} <= hrefs


# --- Caching ------------------------------------------------------------------------------------


def test_a_cached_page_costs_no_query(client: Client, django_assert_num_queries: Any) -> None:
    scene = scenes.outage_scene()
    assert scene.incident is not None
    paths = ["/", f"/incidents/{scene.incident.pk}/", "/history/"]
    first = [get(client, path).content for path in paths]
    with django_assert_num_queries(0):
        again = [get(client, path).content for path in paths]
    assert again == first
    status_cache.clear_local()  # another process: the bytes come from the shared cache
    with django_assert_num_queries(0):
        assert get(client).content == first[0]


def test_gzip_and_conditional_requests(client: Client) -> None:
    scenes.operational_scene()
    plain = get(client)
    packed = get(client, **{"accept-encoding": "gzip, br"})
    assert packed["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.content) == plain.content
    assert len(packed.content) < len(plain.content) / 5
    assert packed["Vary"] == "Accept-Encoding"
    assert get(client, **{"if-none-match": plain["ETag"]}).status_code == 304


def test_a_status_change_shows_on_the_next_request(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    scene = scenes.operational_scene()
    assert "All Systems Operational" in html(client)
    with django_capture_on_commit_callbacks(execute=True):
        flip(scene.monitors["cdn-edge"], Monitor.Status.DOWN, "timeout to 10.0.3.7")
        announce_status_changes()
    page = html(client)
    assert statuses(page)["CDN"] == "Major outage"
    assert "Major System Outage" in page


def test_public_changes_show_on_the_next_request(client: Client) -> None:
    scene = scenes.operational_scene()
    html(client)
    scene.components["Webhooks"].name = "Event hooks"
    scene.components["Webhooks"].save()
    assert "Event hooks" in html(client)
    incident = PublicIncident.objects.create(page=scene.page, title="Slow API", published_at=NOW)
    assert "Slow API" in html(client)
    PublicUpdate.objects.create(incident=incident, status="identified", body="Found the cause.")
    assert "Found the cause." in html(client)
    scene.components["API"].monitors.remove(scene.monitors["prod-api-eu-1"])
    flip(scene.monitors["prod-api-us-1"], Monitor.Status.DOWN)  # no signal: only the m2m change
    scene.components["API"].monitors.remove(scene.monitors["prod-api-us-1"])
    assert statuses(html(client))["API"] == "Operational"


def test_time_alone_refreshes_the_page_within_the_ttl(client: Client) -> None:
    with time_machine.travel(NOW, tick=False) as clock:
        scene = scenes.operational_scene(NOW)
        window = Maintenance.objects.create(
            title="Database upgrade",
            public=True,
            starts_at=NOW + timedelta(seconds=30),
            ends_at=NOW + timedelta(hours=1),
        )
        window.components.set([scene.components["Database"]])
        assert statuses(html(client))["Database"] == "Operational"
        clock.shift(45)  # the window started; no signal says so
        assert statuses(html(client))["Database"] == "Operational"  # still the cached page
        clock.shift(status_cache.ttl())
        assert statuses(html(client))["Database"] == "Under maintenance"


def test_while_one_request_renders_the_others_get_the_stale_page(client: Client) -> None:
    scene = scenes.operational_scene()
    html(client)
    cache.set(status_cache.lock_key(scene.page.pk, "home"), 1, 30)  # someone is rendering
    flip(scene.monitors["cdn-edge"], Monitor.Status.DOWN)
    status_cache.invalidate()
    assert statuses(html(client))["CDN"] == "Operational"
    cache.delete(status_cache.lock_key(scene.page.pk, "home"))
    assert statuses(html(client))["CDN"] == "Major outage"


def test_the_page_still_answers_when_the_cache_is_down(
    client: Client, settings: Any, django_assert_num_queries: Any
) -> None:
    scenes.operational_scene()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    assert "All Systems Operational" in html(client)
    with django_assert_num_queries(0):  # this process's copy, until the TTL
        assert "All Systems Operational" in html(client)
    assert get(client, "/admin/login/", host="testserver").status_code == 200


# --- The admin ------------------------------------------------------------------------------------


def test_admin_posting_an_update_shows_on_the_page(admin_client: Client) -> None:
    scene = scenes.outage_scene()
    assert scene.incident is not None
    html(admin_client)
    change = reverse("admin:incidents_publicincident_change", args=[scene.incident.pk])
    form = admin_client.get(change)
    assert b"Post an update" in form.content
    response = admin_client.post(
        reverse("admin:incidents_publicincident_post_update", args=[scene.incident.pk]),
        {"status": "monitoring", "body": "Deliveries have caught up; we are watching."},
    )
    assert response.status_code == 302 and response["Location"] == change
    page = html(admin_client)
    assert "Deliveries have caught up; we are watching." in page
    scene.incident.refresh_from_db()
    assert scene.incident.status == "monitoring"
    update = scene.incident.updates.first()
    assert update is not None and update.author == "admin"


def test_admin_keeps_a_refused_update(admin_client: Client) -> None:
    scene = scenes.outage_scene()
    assert scene.incident is not None
    url = reverse("admin:incidents_publicincident_post_update", args=[scene.incident.pk])
    admin_client.post(url, {"status": "fixed", "body": "All good & well now"})
    form = admin_client.get(
        reverse("admin:incidents_publicincident_change", args=[scene.incident.pk])
    )
    text = form.content.decode()
    assert "The update was not posted: status: must be one of" in text
    assert ">All good &amp; well now</textarea>" in text
    assert scene.incident.updates.count() == 2


def test_admin_creates_and_publishes_a_public_incident(admin_client: Client) -> None:
    scene = scenes.operational_scene()
    response = admin_client.post(
        reverse("admin:incidents_publicincident_add"),
        {
            "page": scene.page.pk,
            "title": "Dashboard is slow",
            "impact": "minor",
            "components": [scene.components["Dashboard"].pk],
            "created_at_0": "2026-11-18",
            "created_at_1": "10:00:00",
            "first_status": "investigating",
            "first_message": "Pages take long to load; we are on it.",
            "updates-TOTAL_FORMS": "0",
            "updates-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    page = html(admin_client)
    assert "Dashboard is slow" in page and "Pages take long to load" in page


def test_admin_page_forms_render(admin_client: Client) -> None:
    scene = scenes.outage_scene()
    urls = [
        reverse("admin:incidents_statuspage_changelist"),
        reverse("admin:incidents_statuspage_add"),
        reverse("admin:incidents_statuspage_change", args=[scene.page.pk]),
        reverse("admin:incidents_component_change", args=[scene.components["API"].pk]),
        reverse("admin:incidents_publicincident_changelist"),
        reverse("admin:incidents_publicincident_add"),
        reverse("admin:incidents_subscriber_changelist"),
    ]
    for url in urls:
        assert admin_client.get(url).status_code == 200, url
    change = admin_client.get(reverse("admin:incidents_statuspage_change", args=[scene.page.pk]))
    assert f'href="http://{HOST}/"' in change.content.decode()  # "View page"


def page_form(host: str) -> dict[str, Any]:
    return {
        "title": "Acme",
        "host": host,
        "timezone": "UTC",
        "history_days": "90",
        "groups-TOTAL_FORMS": "0",
        "groups-INITIAL_FORMS": "0",
        "components-TOTAL_FORMS": "0",
        "components-INITIAL_FORMS": "0",
    }


def test_admin_refuses_the_admins_own_host_and_warns_of_unlisted_hosts(
    admin_client: Client,
) -> None:
    add = reverse("admin:incidents_statuspage_add")
    admin_host = urlsplit(django_settings.SITE_URL).hostname
    response = admin_client.post(add, page_form(str(admin_host)))
    assert response.status_code == 200
    assert "would hide the admin" in response.content.decode()
    assert not StatusPage.objects.exists()
    response = admin_client.post(add, page_form("Status.Elsewhere.test"), follow=True)
    assert StatusPage.objects.get().host == "status.elsewhere.test"
    assert "is not in ALLOWED_HOSTS" in response.content.decode()


def test_admin_action_drafts_a_public_incident_without_internal_words(
    admin_client: Client,
) -> None:
    scene = scenes.operational_scene()
    internal = Incident.objects.create(
        title="webhook-relay-2 down: connection refused by 10.0.3.9",
        monitor=scene.monitors["webhook-relay-2"],
        reason="connection refused",
        opened_at=NOW,
    )
    response = admin_client.post(
        reverse("admin:incidents_incident_changelist"),
        {"action": "publish_on_status_page", "_selected_action": [internal.pk]},
    )
    draft = PublicIncident.objects.get(incident=internal)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:incidents_publicincident_change", args=[draft.pk])
    assert draft.title == "Webhooks is experiencing issues"
    assert draft.page == scene.page and not draft.is_published
    assert list(draft.components.all()) == [scene.components["Webhooks"]]
    assert "experiencing issues" not in html(admin_client)  # a draft until an update is posted
