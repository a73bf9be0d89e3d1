"""A stale status page is re-rendered by a worker while visitors get the stale copy.

The refresh task is captured where it would be published (no broker is
involved) and run here as a worker would run it, by calling it. The grace is
the default one (STATUS_PAGE_REFRESH_GRACE), unlike the other status page
tests, which render in the request to test what a page shows.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from kombu.exceptions import OperationalError

from checks.models import Monitor, Ping
from incidents.models import StatusPage
from incidents.statuspage import cache as status_cache
from incidents.statuspage import tasks, views
from tests.incidents import status_fixtures as scenes
from tests.incidents.paging import flip
from tests.incidents.test_status_page import statuses

pytestmark = pytest.mark.django_db

HOST = scenes.HOST
NOW = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)


@dataclass
class Enqueued:
    """The refresh tasks handed to the broker: their args and options."""

    calls: list[tuple[list[Any], dict[str, Any]]] = field(default_factory=list)
    refuse: bool = False

    @property
    def names(self) -> list[str]:
        return [args[1] for args, _ in self.calls]

    def run_all(self) -> list[str]:
        """What a worker does with each message: call the task with its JSON args."""
        ran = [tasks.refresh_page(*args) for args, _ in self.calls]
        self.calls.clear()
        return ran


@pytest.fixture(autouse=True)
def status_host(settings: Any) -> Iterator[None]:
    scenes.allow_host(settings)
    scenes.allow_host(settings, "status.other.test")
    forget = scenes.isolate_cache(settings)
    yield
    forget()


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> Enqueued:
    seen = Enqueued()

    def apply_async(args: list[Any], **options: Any) -> None:
        if seen.refuse:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        seen.calls.append((args, options))

    monkeypatch.setattr(tasks.refresh_page, "apply_async", apply_async)
    return seen


def get(client: Client, path: str = "/", host: str = HOST, **headers: Any) -> Any:
    return client.get(path, headers={"host": host, **headers})


def page_text(client: Client, path: str = "/", **headers: Any) -> str:
    response = get(client, path, **headers)
    assert response.status_code == 200, response.content[:300]
    body = response.content
    return (gzip.decompress(body) if response.get("Content-Encoding") == "gzip" else body).decode()


def cdn(client: Client) -> str:
    return statuses(page_text(client))["CDN"]


def cdn_goes_down(scene: scenes.Scene) -> None:
    """A status change, as the checks app announces it: every page's cache is invalidated."""
    flip(scene.monitors["cdn-edge"], Monitor.Status.DOWN)
    status_cache.invalidate()


def stale_home(client: Client) -> scenes.Scene:
    """A page whose front page was cached, then changed: one visitor got it stale since."""
    scene = scenes.operational_scene()
    assert cdn(client) == "Operational"
    cdn_goes_down(scene)
    assert cdn(client) == "Operational"
    return scene


def claim_of(page: StatusPage, name: str = "home") -> Any:
    return cache.get(status_cache.refresh_key(page.pk, name))


# --- The worker does it ----------------------------------------------------------------------


def test_after_a_change_visitors_get_the_stale_page_and_one_refresh_is_queued(
    client: Client, enqueued: Enqueued, django_assert_num_queries: Any
) -> None:
    scene = scenes.operational_scene()
    assert cdn(client) == "Operational"  # nothing cached yet: rendered in the request
    assert enqueued.calls == []
    cdn_goes_down(scene)
    with django_assert_num_queries(0):  # nobody waits for a render
        assert cdn(client) == "Operational"
        assert "All Systems Operational" in page_text(client, **{"accept-encoding": "gzip"})
        assert cdn(client) == "Operational"
    ((args, options),) = enqueued.calls
    page_id, name, claim, facts = args
    assert (page_id, name) == (scene.page.pk, "home")
    assert facts == {"host": HOST, "script": "", "path": "/", "query": "", "secure": False}
    assert options["expires"] == status_cache.LOCK_TTL
    assert claim_of(scene.page)[1] == claim


def test_the_worker_renders_it_and_the_next_visitor_gets_it_without_a_query(
    client: Client, enqueued: Enqueued, django_assert_num_queries: Any
) -> None:
    scene = stale_home(client)
    assert enqueued.run_all() == ["200"]
    with django_assert_num_queries(0):
        assert cdn(client) == "Major outage"
        assert "Major System Outage" in page_text(client, **{"accept-encoding": "gzip"})
    assert claim_of(scene.page) is None  # the next change is refreshed at once
    cdn_goes_down(scene)  # again: a new refresh
    cdn(client)
    assert enqueued.names == ["home"]


def test_every_cached_response_of_a_page_is_refreshed_the_same_way(
    client: Client, enqueued: Enqueued, django_assert_max_num_queries: Any
) -> None:
    scene = scenes.operational_scene()
    badge = f"/badge/{scene.components['CDN'].pk}/status.svg"
    paths = ["/", "/history/?page=2", "/api/v2/summary.json", "/feed.atom", badge]
    for path in paths:
        assert get(client, path).status_code == 200
    cdn_goes_down(scene)
    stale = {path: get(client, path).content for path in paths}
    assert b"major outage" not in stale[badge]
    assert sorted(enqueued.names) == sorted(
        [
            "home",
            "history:2",
            "api:summary",
            "feed:status-feed-atom",
            f"badge:status:{badge[7:-11]}",
        ]
    )
    assert enqueued.run_all() == ["200"] * len(paths)
    # Hits again: the feed and the badge look their page up first; a render makes dozens.
    with django_assert_max_num_queries(3):
        fresh = {path: get(client, path).content for path in paths}
    assert b"major outage" in fresh[badge]
    assert b'"major_outage"' in fresh["/api/v2/summary.json"]
    assert enqueued.calls == []


def test_the_claim_is_freed_when_the_render_fails_and_the_page_stays_stale(
    client: Client, enqueued: Enqueued, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = stale_home(client)

    def broken(snapshot: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the template broke")

    with monkeypatch.context() as patch:
        patch.setattr(views, "home_context", broken)
        assert enqueued.run_all() == ["500"]
    assert claim_of(scene.page) is None
    assert cdn(client) == "Operational"  # the stale page, never an error
    assert enqueued.names == ["home"]  # and another try
    assert enqueued.run_all() == ["200"]
    assert cdn(client) == "Major outage"


def test_the_claim_is_freed_even_when_the_task_itself_raises(
    client: Client, enqueued: Enqueued, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = stale_home(client)

    def crash(page_id: int, facts: Any) -> str:
        raise MemoryError

    monkeypatch.setattr(tasks.refresh, "replay", crash)
    with pytest.raises(MemoryError):
        enqueued.run_all()
    assert claim_of(scene.page) is None


def test_a_task_that_comes_late_changes_nothing_it_should_not(
    client: Client, enqueued: Enqueued, django_assert_num_queries: Any
) -> None:
    scene = stale_home(client)
    (late,) = enqueued.calls
    enqueued.calls.clear()
    cache.delete(status_cache.refresh_key(scene.page.pk, "home"))  # its claim lapsed
    cdn(client)  # so a visitor claims it again
    (current,) = enqueued.calls
    tasks.refresh_page(*late[0])
    assert claim_of(scene.page)[1] == current[0][2]  # not freed by the late task
    with django_assert_num_queries(0):
        assert cdn(client) == "Major outage"
    with django_assert_num_queries(0):  # already fresh: the current task renders nothing
        assert tasks.refresh_page(*current[0]) == "200"


# --- No worker, no broker ---------------------------------------------------------------------


def test_past_the_grace_one_request_renders_it_and_the_next_change_tries_a_worker_again(
    client: Client, enqueued: Enqueued, settings: Any
) -> None:
    with time_machine.travel(NOW, tick=False) as clock:
        scene = scenes.operational_scene(NOW)
        cdn(client)
        cdn_goes_down(scene)
        assert cdn(client) == "Operational"
        clock.shift(status_cache.grace() - 1)
        assert cdn(client) == "Operational"  # the worker still has time
        clock.shift(2)  # it is late, or there is none
        cache.set(status_cache.lock_key(scene.page.pk, "home"), 1, 30)  # one request renders…
        assert cdn(client) == "Operational"  # …and the others still get the stale page
        cache.delete(status_cache.lock_key(scene.page.pk, "home"))
        assert cdn(client) == "Major outage"
        assert len(enqueued.calls) == 1  # nothing more was queued meanwhile
        assert claim_of(scene.page) is None
        flip(scene.monitors["cdn-edge"], Monitor.Status.UP)
        status_cache.invalidate()
        assert cdn(client) == "Major outage"  # stale again, while a worker is asked again
        assert len(enqueued.calls) == 2


def test_a_broker_that_refuses_the_task_means_the_request_renders_it(
    client: Client, enqueued: Enqueued
) -> None:
    scene = scenes.operational_scene()
    cdn(client)
    enqueued.refuse = True
    cdn_goes_down(scene)
    assert cdn(client) == "Major outage"
    assert claim_of(scene.page) is None
    assert enqueued.calls == []


def test_a_grace_of_zero_renders_in_the_request(
    client: Client, enqueued: Enqueued, settings: Any
) -> None:
    settings.STATUS_PAGE_REFRESH_GRACE = 0
    scene = scenes.operational_scene()
    cdn(client)
    cdn_goes_down(scene)
    assert cdn(client) == "Major outage"
    assert enqueued.calls == []


# --- Hostile facts -----------------------------------------------------------------------------


def test_a_request_too_long_to_queue_is_rendered_where_it_arrived(
    client: Client, enqueued: Enqueued
) -> None:
    scene = scenes.operational_scene()
    cdn(client)
    cdn_goes_down(scene)
    assert statuses(page_text(client, "/?" + "x" * 5000))["CDN"] == "Major outage"
    assert enqueued.calls == []


def facts(**changes: Any) -> dict[str, Any]:
    return {"host": HOST, "script": "", "path": "/", "query": "", "secure": False} | changes


@pytest.mark.parametrize(
    "bad",
    [
        facts(host="testserver"),  # the admin's site, not a status page
        facts(host="status.other.test"),  # another page than the task names
        facts(host="evil.example"),  # not in ALLOWED_HOSTS
        facts(path="/x" * 5000),  # longer than any request that is queued
        facts(secure="yes"),
        {"host": HOST},
        ["not", "a", "dict"],
    ],
)
def test_request_facts_that_are_not_this_pages_do_nothing(
    client: Client, enqueued: Enqueued, bad: Any
) -> None:
    StatusPage.objects.create(title="Other Corp", host="status.other.test")
    scene = stale_home(client)
    ((args, _),) = enqueued.calls
    assert tasks.refresh_page(scene.page.pk, "home", args[2], bad) == "refused"
    assert claim_of(scene.page) is None
    assert cdn(client) == "Operational"  # nothing rendered: still the stale page


def test_a_forged_refresh_cannot_reach_the_machinery_paths(
    client: Client, enqueued: Enqueued
) -> None:
    scene = scenes.operational_scene()
    heartbeat = Monitor.objects.create(name="nightly backup", kind=Monitor.Kind.HEARTBEAT)
    for path in (f"/ping/{heartbeat.ping_key}", "/health/ready", "/metrics"):
        assert tasks.refresh_page(scene.page.pk, "home", "x", facts(path=path)) == "refused"
    assert not Ping.objects.exists()
    # The status host's own site answers the rest, and it has no admin.
    assert tasks.refresh_page(scene.page.pk, "home", "x", facts(path="/admin/")) == "404"


def test_the_replay_keeps_the_visitors_scheme_under_ssl_redirect(
    client: Client, enqueued: Enqueued, settings: Any
) -> None:
    settings.SECURE_SSL_REDIRECT = True
    scene = scenes.operational_scene()
    https = {"x-forwarded-proto": "https"}
    assert get(client, **https).status_code == 200
    assert get(client).status_code == 301  # plain HTTP is redirected, never served
    cdn_goes_down(scene)
    assert "All Systems Operational" in page_text(client, **https)
    ((args, _),) = enqueued.calls
    assert args[3]["secure"] is True
    assert enqueued.run_all() == ["200"]  # rendered, not redirected
    assert statuses(page_text(client, **https))["CDN"] == "Major outage"
