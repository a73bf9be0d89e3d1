"""Status page scenes: all operational, an outage with a published incident, a maintenance window.

Each builder makes one realistic page (grouped components fed by monitors, 90
days of rollups, a response-time series) in the test database and returns a
`Scene`. The status page tests assert on them and the browser tests screenshot
them, so they are built relative to `now` (default: the real time).

The monitors carry private names, targets and reasons (PRIVATE) that must
never reach a public page.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone

from checks.models import Monitor, Rollup
from incidents.models import (
    Component,
    ComponentGroup,
    Maintenance,
    PublicIncident,
    PublicUpdate,
    StatusPage,
)

HOST = "status.acme.test"
# What the admin sees and the public must not: monitor names, targets, reasons.
PRIVATE = [
    "prod-api-eu-1",
    "prod-db-primary",
    "10.0.3.7",
    "hunter2",
    "db-primary.internal",
    "connection refused by db-primary.internal",
    "webhook-relay-2",
]

CORE, INFRA = "Core services", "Infrastructure"
# (group, component, description, monitors as (name, target), show response time)
LAYOUT: list[tuple[str, str, str, list[tuple[str, str]], bool]] = [
    (
        CORE,
        "API",
        "REST and GraphQL APIs",
        [
            ("prod-api-eu-1", "https://10.0.3.7:8443/healthz"),
            ("prod-api-us-1", "https://10.0.4.7:8443/healthz"),
        ],
        True,
    ),
    (CORE, "Dashboard", "The web app", [("dashboard-web", "https://app.acme.test")], True),
    (CORE, "Webhooks", "Event deliveries", [("webhook-relay-2", "tcp://10.0.3.9:7000")], False),
    (INFRA, "CDN", "Static assets", [("cdn-edge", "https://cdn.acme.test/ping")], False),
    (
        INFRA,
        "Database",
        "",
        [("prod-db-primary", "postgres://admin:hunter2@db-primary.internal:5432/prod")],
        False,
    ),
    ("", "Documentation", "docs.acme.test", [("docs-site", "https://docs.acme.test")], False),
]


@dataclass
class Scene:
    page: StatusPage
    components: dict[str, Component]
    monitors: dict[str, Monitor]
    incident: PublicIncident | None = None
    maintenances: list[Maintenance] = field(default_factory=list)


def allow_host(settings_fixture: Any, host: str = HOST) -> None:
    """Let requests for `host` through ALLOWED_HOSTS (pass pytest-django's `settings`)."""
    settings_fixture.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, host]


def render_in_request(settings_fixture: Any) -> None:
    """Stale pages are rendered by the request that finds them (STATUS_PAGE_REFRESH_GRACE=0).

    For tests about what a page shows after a change: by default a worker
    re-renders it while visitors get the stale copy (test_status_refresh.py
    tests that path), and no worker runs here.
    """
    settings_fixture.STATUS_PAGE_REFRESH_GRACE = 0


def isolate_cache(settings_fixture: Any) -> Callable[[], None]:
    """A cache namespace of this test's own: test runs share one Redis, and page ids repeat.

    Returns a function that deletes what the test left there (call it at teardown;
    not FLUSHDB, since other test runs share the database).
    """
    caches = {alias: dict(config) for alias, config in settings.CACHES.items()}
    prefix = f"test-{uuid.uuid4().hex}"
    caches["default"]["KEY_PREFIX"] = prefix
    settings_fixture.CACHES = caches
    location = caches["default"].get("LOCATION", "")
    is_redis = caches["default"]["BACKEND"].endswith("RedisCache")

    def forget() -> None:
        if not is_redis:
            return
        client = redis.Redis.from_url(location, socket_timeout=2)  # even if the test swapped it
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    return forget


def page(host: str = HOST, **fields: Any) -> StatusPage:
    fields.setdefault("title", "Acme Status")
    fields.setdefault("description", "Live status of the Acme platform.")
    fields.setdefault("support_url", "https://acme.test/support")
    fields.setdefault("timezone", "Europe/Berlin")
    return StatusPage.objects.create(host=host, **fields)


def operational_scene(now: datetime | None = None, host: str = HOST) -> Scene:
    """Every component up, 90 days of mostly perfect uptime with a few bad days."""
    now = now or timezone.now()
    made = page(host)
    groups: dict[str, ComponentGroup] = {}
    components: dict[str, Component] = {}
    monitors: dict[str, Monitor] = {}
    for position, (group_name, name, description, feeds, latency) in enumerate(LAYOUT):
        group = None
        if group_name:
            if group_name not in groups:
                groups[group_name] = ComponentGroup.objects.create(
                    page=made, name=group_name, position=len(groups) * 10
                )
            group = groups[group_name]
        component = Component.objects.create(
            page=made,
            group=group,
            name=name,
            description=description,
            position=position if group else 100,
            show_response_time=latency,
        )
        for monitor_name, target in feeds:
            monitor = Monitor.objects.create(
                name=monitor_name,
                kind="http",
                target=target,
                status=Monitor.Status.UP,
                last_reason=f"HTTP 200 from {target}",
            )
            component.monitors.add(monitor)
            monitors[monitor_name] = monitor
        components[name] = component
    history(list(monitors.values()), now)
    return Scene(made, components, monitors)


def history(monitors: list[Monitor], now: datetime) -> None:
    """Hourly rollups: one a day for 89 days (some days bad), then every hour of the last 24."""
    rows = []
    hour = now.replace(minute=0, second=0, microsecond=0)
    for n, monitor in enumerate(monitors):
        for day in range(1, 90):
            failing = 0
            if (day * 7 + n * 13) % 41 == 0:
                failing = 30  # a bad day: 97.9%
            elif (day * 5 + n * 3) % 23 == 0:
                failing = 3  # a blip: 99.79%
            rows.append(
                Rollup(
                    monitor=monitor, period="hour", bucket_start=hour - timedelta(days=day),
                    total=1440, ok=1440 - failing, failing=failing,
                )
            )  # fmt: skip
            # The same day as the rollup job writes it (days in TIME_ZONE).
            day_start = timezone.localtime(hour - timedelta(days=day)).replace(hour=0)
            rows.append(
                Rollup(
                    monitor=monitor, period="day", bucket_start=day_start,
                    total=1440, ok=1440 - failing, failing=failing,
                )
            )  # fmt: skip
        for back in range(24):
            rows.append(
                Rollup(
                    monitor=monitor, period="hour", bucket_start=hour - timedelta(hours=back),
                    total=60, ok=60, latency_p50=80 + 40 * ((back * 7 + n) % 5) + n * 10,
                )
            )  # fmt: skip
    Rollup.objects.bulk_create(rows, ignore_conflicts=True)


def set_status(monitor: Monitor, status: str, reason: str = "") -> None:
    Monitor.objects.filter(pk=monitor.pk).update(status=status, last_reason=reason)
    monitor.refresh_from_db()


def outage_scene(now: datetime | None = None, host: str = HOST) -> Scene:
    """Webhooks down (major outage), the API half down, and a published incident about them."""
    now = now or timezone.now()
    scene = operational_scene(now, host)
    set_status(
        scene.monitors["webhook-relay-2"],
        Monitor.Status.DOWN,
        "connection refused by db-primary.internal (10.0.3.7)",
    )
    set_status(scene.monitors["prod-api-eu-1"], Monitor.Status.DOWN, "HTTP 503 from 10.0.3.7")
    # They have been failing for the last hour.
    hour = now.replace(minute=0, second=0, microsecond=0)
    Rollup.objects.filter(
        monitor__in=[scene.monitors["webhook-relay-2"], scene.monitors["prod-api-eu-1"]],
        period="hour",
        bucket_start__gte=hour - timedelta(hours=1),
    ).update(ok=0, failing=60)
    incident = PublicIncident.objects.create(
        page=scene.page,
        title="Delayed webhook deliveries and API errors",
        impact=PublicIncident.Impact.MAJOR,
        status=PublicIncident.Status.IDENTIFIED,
        created_at=now - timedelta(minutes=50),
        published_at=now - timedelta(minutes=48),
    )
    incident.components.set([scene.components["Webhooks"], scene.components["API"]])
    PublicUpdate.objects.create(
        incident=incident,
        status=PublicIncident.Status.INVESTIGATING,
        body="We are investigating delayed webhook deliveries and elevated API error rates.",
        created_at=now - timedelta(minutes=48),
    )
    PublicUpdate.objects.create(
        incident=incident,
        status=PublicIncident.Status.IDENTIFIED,
        body="A failed network switch in one region is the cause. "
        "Traffic is being moved to healthy capacity.",
        created_at=now - timedelta(minutes=20),
    )
    scene.incident = incident
    return scene


def maintenance_scene(now: datetime | None = None, host: str = HOST) -> Scene:
    """The database in a public maintenance window now, and CDN work announced for tomorrow."""
    now = now or timezone.now()
    scene = operational_scene(now, host)
    running = Maintenance.objects.create(
        title="Database upgrade",
        public=True,
        public_description="We are upgrading the database cluster to a new major version. "
        "The dashboard may be read-only for a few minutes.",
        starts_at=now - timedelta(minutes=30),
        ends_at=now + timedelta(minutes=90),
    )
    running.components.set([scene.components["Database"]])
    soon = Maintenance.objects.create(
        title="CDN provider migration",
        public=True,
        public_description="Assets move to a new CDN. No downtime is expected.",
        starts_at=now + timedelta(days=1),
        ends_at=now + timedelta(days=1, hours=2),
    )
    soon.components.set([scene.components["CDN"]])
    scene.maintenances = [running, soon]
    return scene


# The three scenes the browser tests screenshot, by name.
SCENES = {
    "operational": operational_scene,
    "outage": outage_scene,
    "maintenance": maintenance_scene,
}
