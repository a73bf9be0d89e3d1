"""Public incidents: updates written in the admin, publishing drafts, and auto-publishing."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from checks.models import Monitor
from incidents.models import Component, Incident, PublicIncident, StatusPage, Subscriber
from incidents.statuspage import autopublish, tasks
from incidents.statuspage.publishing import post_update, publish
from tests.incidents.paging import fail, flip, monitor, tick
from tests.receivers import SmtpServer

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SECRETS = ("internal-db-primary", "10.0.3.7", "hunter2", "connection refused")


@pytest.fixture(autouse=True)
def own_cache(settings: Any) -> None:
    """A key prefix of this test's own: the test Redis is shared with other runs."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = caches
    settings.STATUS_PAGE_REFRESH_GRACE = 0  # changes show on the next request (no worker here)


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """The status page's tasks run here, as a worker would run them (retries included)."""
    seen: list[tuple[str, tuple[Any, ...]]] = []
    for task in (tasks.announce_update, tasks.deliver_update, tasks.deliver_confirmation):

        def delay(*args: Any, _task: Any = task) -> None:
            seen.append((_task.name.rsplit(".", 1)[-1], args))
            _task.apply(args=args)

        monkeypatch.setattr(task, "delay", delay)
    yield seen


@pytest.fixture
def page() -> StatusPage:
    return StatusPage.objects.create(title="Acme status", host="status.acme.test")


def component(page: StatusPage, name: str, *monitors: Monitor, **fields: Any) -> Component:
    made = Component.objects.create(page=page, name=name, **fields)
    made.monitors.set(monitors)
    return made


def draft(page: StatusPage, title: str = "Elevated error rates") -> PublicIncident:
    return PublicIncident.objects.create(page=page, title=title, impact="major")


def subscriber(page: StatusPage, email: str = "ann@example.com") -> Subscriber:
    return Subscriber.objects.create(page=page, kind="email", email=email, confirmed_at=NOW)


def secret_monitor() -> Monitor:
    return monitor(
        "internal-db-primary",
        target="postgres://admin:hunter2@10.0.3.7:5432/prod",
    )


# --- Updates and publishing -------------------------------------------------------------


def test_it_moves_the_incident_with_each_update(page: StatusPage) -> None:
    incident = draft(page)
    with time_machine.travel(NOW, tick=False):
        update = post_update(incident, "investigating", "  We are looking into it.  ", "ann")
    incident.refresh_from_db()
    assert (incident.status, incident.published_at, incident.resolved_at) == (
        "investigating",
        NOW,
        None,
    )
    assert (update.status, update.body, update.author) == (
        "investigating",
        "We are looking into it.",
        "ann",
    )

    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        post_update(incident, "resolved", "Fixed.", "ann")
    incident.refresh_from_db()
    assert (incident.status, incident.resolved_at) == ("resolved", NOW + timedelta(hours=1))

    with time_machine.travel(NOW + timedelta(hours=2), tick=False):
        post_update(incident, "identified", "It came back; we know why.", "bob")
    incident.refresh_from_db()
    assert (incident.status, incident.resolved_at) == ("identified", None)
    assert incident.published_at == NOW  # published once, at the first update
    assert [u.status for u in incident.updates.all()] == ["identified", "resolved", "investigating"]


@pytest.mark.parametrize(
    ("status", "body", "field"),
    [("fixed", "Done.", "status"), ("resolved", "   ", "body"), ("resolved", "x" * 10_001, "body")],
)
def test_it_refuses_a_bad_update_naming_the_field(
    page: StatusPage, status: str, body: str, field: str
) -> None:
    incident = draft(page)
    with pytest.raises(ValueError, match=f"^{field}: "):
        post_update(incident, status, body, "ann")
    incident.refresh_from_db()
    assert incident.published_at is None and incident.updates.count() == 0


def test_publishing_a_draft_without_updates_tells_nobody(
    page: StatusPage, ran: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    subscriber(page)
    incident = draft(page)
    with django_capture_on_commit_callbacks(execute=True):
        publish(incident, "ann")
    assert incident.published_at is not None
    incident.refresh_from_db()
    assert incident.is_published
    assert ran == []


def test_publishing_a_draft_with_an_update_mails_subscribers_once(
    page: StatusPage,
    ran: list[Any],
    smtp_server: SmtpServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    subscriber(page)
    incident = draft(page)
    incident.updates.create(status="identified", body="A bad deploy; rolling back.")
    with django_capture_on_commit_callbacks(execute=True):
        publish(incident, "ann")
        publish(incident, "ann")  # already published: nothing more
    [mail] = smtp_server.wait_for(1)
    assert mail.recipients == ["ann@example.com"]
    assert mail.message["Subject"].strip() == "[Acme status] Elevated error rates — Identified"
    assert [name for name, _ in ran] == ["announce_update", "deliver_update"]


# --- Auto-publishing ----------------------------------------------------------------------


def test_a_failing_monitor_publishes_one_incident_in_public_words(
    page: StatusPage, django_capture_on_commit_callbacks: Any, ran: list[Any]
) -> None:
    db = secret_monitor()
    database = component(page, "Database", db, auto_publish=True)
    component(page, "API", monitor("api"), auto_publish=True)  # not fed by the monitor
    fail(db, reason="connection refused by 10.0.3.7")
    with django_capture_on_commit_callbacks(execute=True):
        tick()

    [public] = PublicIncident.objects.all()
    internal = Incident.objects.get(monitor=db)
    assert public.incident == internal and public.page == page
    assert public.title == "Database — outage"
    assert (public.impact, public.status) == ("critical", "investigating")
    assert public.is_published
    assert list(public.components.all()) == [database]
    [update] = public.updates.all()
    assert update.body == "We are investigating issues affecting Database."
    for text in (public.title, update.body):
        assert not any(secret in text for secret in SECRETS)

    # The signal again (a second worker, a redelivered message): no second incident.
    autopublish.publish_opened(internal)
    assert PublicIncident.objects.count() == 1 and public.updates.count() == 1


def test_recovery_resolves_the_public_incident(
    page: StatusPage, django_capture_on_commit_callbacks: Any, ran: list[Any]
) -> None:
    db = monitor("db")
    component(page, "Database", db, auto_publish=True)
    fail(db)
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    flip(db, Monitor.Status.UP)
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    public = PublicIncident.objects.get()
    assert public.status == "resolved" and public.resolved_at is not None
    assert [(u.status, u.body) for u in public.updates.all()] == [
        ("resolved", "This incident has been resolved."),
        ("investigating", "We are investigating issues affecting Database."),
    ]


def test_a_failure_coming_back_reopens_the_same_public_incident(
    page: StatusPage, django_capture_on_commit_callbacks: Any, ran: list[Any]
) -> None:
    db = monitor("db")
    component(page, "Database", db, auto_publish=True)
    for to in (Monitor.Status.DOWN, Monitor.Status.UP, Monitor.Status.DOWN):
        flip(db, to)
        with django_capture_on_commit_callbacks(execute=True):
            tick()
    public = PublicIncident.objects.get()
    assert (public.status, public.resolved_at) == ("investigating", None)
    assert [u.status for u in public.updates.all()] == [
        "investigating",
        "resolved",
        "investigating",
    ]


def test_partial_and_degraded_components_are_named_so(
    django_capture_on_commit_callbacks: Any, ran: list[Any]
) -> None:
    eu, us = monitor("api-eu"), monitor("api-us")
    slow = monitor("search", severity="low")
    first = StatusPage.objects.create(title="Acme", host="status.acme.test")
    other = StatusPage.objects.create(title="Acme EU", host="status.acme.eu")
    component(first, "API", eu, us, auto_publish=True)
    component(first, "Search", slow, auto_publish=True)
    component(other, "Europe", eu, auto_publish=True)
    component(other, "Quiet", eu)  # not auto-published
    fail(eu)
    flip(slow, Monitor.Status.DEGRADED)
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    titles = sorted(PublicIncident.objects.values_list("page__host", "title", "impact"))
    assert titles == [
        ("status.acme.eu", "Europe — outage", "critical"),
        ("status.acme.test", "API — partial outage", "major"),
        ("status.acme.test", "Search — degraded performance", "minor"),
    ]


def test_components_without_auto_publish_stay_quiet(
    page: StatusPage, django_capture_on_commit_callbacks: Any, ran: list[Any]
) -> None:
    db = monitor("db")
    component(page, "Database", db)
    fail(db)
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    assert Incident.objects.filter(monitor=db).exists()
    assert not PublicIncident.objects.exists()


def test_auto_published_updates_reach_subscribers(
    page: StatusPage,
    smtp_server: SmtpServer,
    django_capture_on_commit_callbacks: Any,
    ran: list[Any],
) -> None:
    subscriber(page)
    db = secret_monitor()
    component(page, "Database", db, auto_publish=True)
    fail(db, reason="connection refused by 10.0.3.7")
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    [mail] = smtp_server.wait_for(1)
    assert mail.message["Subject"].strip() == "[Acme status] Database — outage — Investigating"
    text = mail.message.as_string()
    assert (
        "We are investigating issues affecting Database."
        in mail.message.get_body(("plain",)).get_content()
    )
    assert not any(secret in text for secret in SECRETS)
