"""The on-call console at /oncall/: see, acknowledge, note and resolve; who is on call."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client

from alerts.models import Contact, LayerMember, OnCallSchedule, ScheduleLayer
from checks.models import Monitor
from incidents import services
from incidents.models import Incident
from tests.incidents.paging import fail, flip, monitor, the_incident, tick, timeline

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 3, 1, 2, 48, tzinfo=UTC)  # a Friday, 02:48
CONSOLE = "/oncall/"
FRAGMENT = "/oncall/fragment/"
HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
DASH = "\N{EN DASH}"
APOSTROPHE = "\N{RIGHT SINGLE QUOTATION MARK}"


@pytest.fixture(autouse=True)
def utc(settings: Any) -> None:
    settings.TIME_ZONE = "UTC"


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def failing(name: str, **fields: Any) -> Incident:
    """A monitor that goes down now and the incident the machinery opens for it."""
    mon = monitor(name, **fields)
    fail(mon, f"{name}: HTTP status is 503, expected one of 200-299")
    tick()
    return the_incident(mon)


def act(client: Client, incident: Incident, action: str, **data: str) -> Any:
    return client.post(f"/oncall/incidents/{incident.pk}/{action}/", data, follow=True)


def page_of(response: Any) -> str:
    return response.content.decode()


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def order_of(html: str, *texts: str) -> list[int]:
    return [html.index(text) for text in texts]


# --- Seeing what is open ----------------------------------------------------------------


def test_it_lists_open_incidents_triggered_first_then_by_severity_and_age(
    admin_client: Client, clock: time_machine.Coordinates
) -> None:
    cache = failing("cache", severity="medium")
    clock.shift(timedelta(minutes=1))
    failing("db", severity="critical")
    clock.shift(timedelta(minutes=1))
    failing("checkout-api", severity="critical")
    clock.shift(timedelta(minutes=1))
    search = failing("search", severity="critical")
    services.acknowledge(search.pk, "Alice", via="admin")
    old = failing("billing")
    services.resolve(old.pk, "Bob")
    clock.shift(timedelta(minutes=9))  # 02:48 + 12 min

    response = admin_client.get(CONSOLE)
    assert response.status_code == 200
    html = page_of(response)
    titles = ["db is down", "checkout-api is down", "cache is down", "search is down"]
    positions = order_of(html, *titles)
    assert positions == sorted(positions)  # critical oldest, critical newer, medium; then acked
    assert html.index("<h3>Waiting for acknowledgement</h3>") < html.index("<h3>Acknowledged</h3>")
    assert "billing is down" not in html  # resolved
    assert "open for 12 min" in html  # cache, opened at 02:48
    assert "Acknowledged by <strong>Alice</strong> 9 min ago." in html
    assert "3 waiting for acknowledgement · 1 acknowledged · 5 monitors failing" in html
    assert "<title>(3) On call · Watchpost</title>" in html
    # Each open incident carries its timeline in a <details>.
    card = html[html.index(f'id="incident-{cache.pk}"') :]
    card = card[: card.index("</article>")]
    assert "<details" in card and "Timeline · " in card
    assert "cache is down: cache: HTTP status is 503" in card
    assert f'action="/oncall/incidents/{cache.pk}/acknowledge/"' in card


def test_an_acknowledged_incident_has_no_acknowledge_button_and_a_suppressed_one_says_why(
    admin_client: Client, clock: time_machine.Coordinates
) -> None:
    parent = monitor("core-db")
    child = monitor("orders", depends_on=parent)
    fail(parent, "connection refused")
    tick()
    fail(child, "HTTP status is 502")
    tick()
    services.acknowledge(the_incident(parent).pk, "Alice")
    html = page_of(admin_client.get(CONSOLE))
    assert f"/oncall/incidents/{the_incident(parent).pk}/acknowledge/" not in html
    assert f"/oncall/incidents/{the_incident(parent).pk}/resolve/" in html
    assert "Paging no one: its parent monitor is down (core-db)." in html


def test_a_long_timeline_shows_its_latest_events_and_links_to_the_rest(
    admin_client: Client, clock: time_machine.Coordinates
) -> None:
    incident = failing("api")
    for n in range(12):
        clock.shift(timedelta(seconds=30))
        services.add_note(incident.pk, "Alice", f"step {n:02d}")
    html = page_of(admin_client.get(CONSOLE))
    assert "step 11" in html and "step 02" in html
    assert "step 01" not in html  # only the last 10 events are shown
    assert "earlier events: " in html
    assert f'href="/admin/incidents/incident/{incident.pk}/change/"' in html


def test_a_quiet_night_says_so(admin_client: Client) -> None:
    html = page_of(admin_client.get(CONSOLE))
    assert "All quiet: no open incidents, and every monitor is up." in html
    assert "No open incidents." in html


# --- Who may see it ---------------------------------------------------------------------


def test_anonymous_people_are_sent_to_the_admin_login(client: Client) -> None:
    for path in (CONSOLE, FRAGMENT):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"] == f"/admin/login/?next={path}"
    incident = failing("api")
    response = client.post(f"/oncall/incidents/{incident.pk}/acknowledge/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    incident.refresh_from_db()
    assert incident.status == "triggered"


def test_a_logged_in_user_who_is_not_staff_is_refused(
    client: Client, django_user_model: type[User]
) -> None:
    viewer = django_user_model.objects.create_user("viewer", password="not-used-here")
    client.force_login(viewer)
    incident = failing("api")
    assert client.get(CONSOLE).status_code == 403
    assert client.get(FRAGMENT).status_code == 403
    assert client.post(f"/oncall/incidents/{incident.pk}/acknowledge/").status_code == 403
    incident.refresh_from_db()
    assert incident.status == "triggered"


# --- Acting on incidents ----------------------------------------------------------------


def test_it_acknowledges_in_two_clicks_as_the_logged_in_user(admin_user: User) -> None:
    admin_user.first_name, admin_user.last_name = "Ada", "Lovelace"
    admin_user.save()
    incident = failing("checkout-api")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)

    page = page_of(browser.get(CONSOLE))  # click 1: open the console
    form = re.search(
        rf'<form method="post" action="(/oncall/incidents/{incident.pk}/acknowledge/)"[^>]*>'
        r'<input type="hidden" name="csrfmiddlewaretoken" value="([^"]+)">',
        page,
    )
    assert form is not None
    response = browser.post(form[1], {"csrfmiddlewaretoken": form[2]})  # click 2: Acknowledge
    assert response.status_code == 302
    assert response["Location"] == CONSOLE

    incident.refresh_from_db()
    assert incident.status == "acknowledged"
    assert incident.acknowledged_by == "Ada Lovelace"
    assert "acknowledged: acknowledged by Ada Lovelace via on-call console" in timeline(incident)
    after = browser.get(CONSOLE)
    assert messages_of(after) == [f"Acknowledged #{incident.pk} checkout-api is down"]
    assert 'role="status"' in page_of(after)
    assert "Acknowledged by <strong>Ada Lovelace</strong>" in page_of(after)
    # A reload shows the message no more, and a replayed POST changes nothing.
    assert messages_of(browser.get(CONSOLE)) == []
    replay = browser.post(form[1], {"csrfmiddlewaretoken": form[2]}, follow=True)
    assert messages_of(replay) == [
        f"#{incident.pk} checkout-api is down was already acknowledged by Ada Lovelace "
        "less than a minute ago."
    ]
    assert [e.kind for e in incident.events.all()].count("acknowledged") == 1


def test_a_post_without_the_csrf_token_is_refused(admin_user: User) -> None:
    incident = failing("api")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    assert browser.post(f"/oncall/incidents/{incident.pk}/acknowledge/").status_code == 403
    incident.refresh_from_db()
    assert incident.status == "triggered"


def test_it_resolves_with_a_note(admin_client: Client) -> None:
    incident = failing("checkout-api")
    response = act(admin_client, incident, "resolve", text="  rolled back deploy 4121 ")
    assert response.redirect_chain == [(CONSOLE, 302)]
    assert messages_of(response) == [f"Resolved #{incident.pk} checkout-api is down with your note"]
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert incident.resolved_by == "admin"
    assert incident.resolution_note == "rolled back deploy 4121"
    assert "resolved: resolved by admin via on-call console: rolled back deploy 4121" in timeline(
        incident
    )
    assert f'id="incident-{incident.pk}"' not in page_of(response)  # no longer open


def test_it_adds_a_note_to_the_timeline(admin_client: Client) -> None:
    incident = failing("checkout-api")
    response = act(admin_client, incident, "note", text="pods restarting; looking at OOM kills")
    assert messages_of(response) == [f"Added a note to #{incident.pk} checkout-api is down"]
    note = incident.events.get(kind="note")
    assert note.actor == "admin"
    assert note.message == "pods restarting; looking at OOM kills"
    assert "pods restarting; looking at OOM kills" in page_of(response)
    incident.refresh_from_db()
    assert incident.status == "triggered"


def test_an_empty_note_says_it_needs_text_and_changes_nothing(admin_client: Client) -> None:
    incident = failing("checkout-api")
    response = act(admin_client, incident, "note", text="   ")
    assert messages_of(response) == [
        f"Nothing added to #{incident.pk} checkout-api is down: a note needs some text."
    ]
    html = page_of(response)
    assert 'role="alert"' in html and "a note needs some text" in html
    assert not incident.events.filter(kind="note").exists()
    # The rest of the console is still there, buttons and all.
    assert f"/oncall/incidents/{incident.pk}/acknowledge/" in html


def test_acting_on_a_resolved_incident_is_a_harmless_no_op_with_a_message(
    admin_client: Client,
) -> None:
    incident = failing("checkout-api")
    services.resolve(incident.pk, "Bob", note="fixed")

    acked = act(admin_client, incident, "acknowledge")
    assert messages_of(acked) == [
        f"#{incident.pk} checkout-api is down was already resolved by Bob "
        "less than a minute ago; nothing changed."
    ]
    resolved = act(admin_client, incident, "resolve")
    assert "was already resolved by Bob" in messages_of(resolved)[0]
    incident.refresh_from_db()
    assert (incident.status, incident.resolved_by, incident.resolution_note) == (
        "resolved",
        "Bob",
        "fixed",
    )
    kinds = [e.kind for e in incident.events.all()]
    assert kinds.count("resolved") == 1 and "acknowledged" not in kinds

    # What someone typed before pressing Resolve is not thrown away.
    late = act(admin_client, incident, "resolve", text="it was the cache")
    assert messages_of(late)[0].endswith("Your note was added to its timeline.")
    assert incident.events.filter(kind="note", message="it was the cache").exists()


def test_only_post_acts_and_unknown_actions_or_incidents_are_refused(admin_client: Client) -> None:
    incident = failing("api")
    assert admin_client.get(f"/oncall/incidents/{incident.pk}/acknowledge/").status_code == 405
    assert admin_client.post(f"/oncall/incidents/{incident.pk}/delete/").status_code == 404
    gone = admin_client.post("/oncall/incidents/999999/acknowledge/", follow=True)
    assert messages_of(gone) == ["There is no incident #999999; it may have been deleted."]
    incident.refresh_from_db()
    assert incident.status == "triggered"


# --- Who is on call ---------------------------------------------------------------------


def rotation(schedule: OnCallSchedule, level: int, *people: Contact) -> ScheduleLayer:
    layer = ScheduleLayer.objects.create(
        schedule=schedule,
        level=level,
        shift="daily",
        start_date=date(2024, 3, 1),
        handoff_time=time(9, 0),
    )
    for position, person in enumerate(people):
        LayerMember.objects.create(layer=layer, contact=person, position=position)
    return layer


def test_it_shows_who_is_on_call_now_and_my_next_shifts(
    admin_client: Client, admin_user: User
) -> None:
    alice = Contact.objects.create(name="Alice", phone="+14155550123", user=admin_user)
    bob = Contact.objects.create(name="Bob", email="bob@example.test")
    carol = Contact.objects.create(name="Carol")
    platform = OnCallSchedule.objects.create(name="Platform")
    rotation(platform, 1, alice, bob)
    rotation(platform, 2, carol)
    payments = OnCallSchedule.objects.create(name="Payments")
    rotation(payments, 1, bob, alice)

    with time_machine.travel(datetime(2024, 3, 1, 10, 0, tzinfo=UTC), tick=False):
        html = page_of(admin_client.get(CONSOLE))
    platform_part = html[html.index("<h3>Platform</h3>") :]
    assert re.search(
        r'<dt>primary</dt>\s*<dd><span class="person">Alice</span> '
        r'<span class="you">\(you\)</span>',
        platform_part,
    )
    assert '<a href="tel:+14155550123">+14155550123</a>' in platform_part
    assert re.search(r'<dt>secondary</dt>\s*<dd><span class="person">Carol</span>', platform_part)
    payments_part = html[html.index("<h3>Payments</h3>") : html.index("<h3>Platform</h3>")]
    assert re.search(r'<dt>primary</dt>\s*<dd><span class="person">Bob</span>', payments_part)
    assert '<a href="mailto:bob@example.test">bob@example.test</a>' in payments_part

    shifts = html[html.index("My next shifts") :]
    # Platform: on now until Sat 09:00, then every other day; Payments: Sat 09:00 to Sun 09:00.
    assert "<strong>Platform</strong> · primary" in shifts
    assert re.search(r"On call now</span>, until <time[^>]*>Sat 2 Mar 09:00</time>", shifts)
    assert re.search(
        r"<strong>Payments</strong> · primary</p>\s*<p><time[^>]*>Sat 2 Mar 09:00</time> "
        + DASH
        + " "
        r"<time[^>]*>Sun 3 Mar 09:00</time>\s*<span class=\"muted\">\(in 23 h\)</span>",
        shifts,
    )
    assert re.search(
        rf"<time[^>]*>Sun 3 Mar 09:00</time> {DASH} <time[^>]*>Mon 4 Mar 09:00</time>", shifts
    )


def test_a_user_without_a_contact_is_told_kindly(admin_client: Client) -> None:
    html = page_of(admin_client.get(CONSOLE))
    assert f"Your login isn{APOSTROPHE}t linked to a contact yet" in html
    assert "set its user to <strong>admin</strong>" in html
    assert "No on-call schedules yet" in html


# --- Monitors failing -------------------------------------------------------------------


def test_it_lists_monitors_down_or_degraded_with_their_reason_and_since_when(
    admin_client: Client, clock: time_machine.Coordinates
) -> None:
    slow = monitor("search")
    flip(slow, Monitor.Status.DEGRADED, "p95 latency 2300 ms above 800 ms")
    Monitor.objects.filter(pk=slow.pk).update(last_reason="p95 latency 2300 ms above 800 ms")
    clock.shift(timedelta(minutes=5))
    db = monitor("db")
    flip(db, Monitor.Status.DOWN, "connection refused")
    Monitor.objects.filter(pk=db.pk).update(last_reason="connection refused (10.0.3.7:5432)")
    monitor("fine")
    monitor("quiet", status=Monitor.Status.PAUSED)
    clock.shift(timedelta(minutes=14))

    html = page_of(admin_client.get(CONSOLE))
    part = html[html.index("Monitors failing now") : html.index("On call now</h2>")]
    assert order_of(part, ">db</a>", ">search</a>") == sorted(
        order_of(part, ">db</a>", ">search</a>")
    )
    assert "connection refused (10.0.3.7:5432)" in part
    assert "p95 latency 2300 ms above 800 ms" in part
    assert re.search(r"for 14 min, since <time[^>]*>Fri 1 Mar 02:53</time>", part)
    assert re.search(r"for 19 min, since <time[^>]*>Fri 1 Mar 02:48</time>", part)
    assert ">fine</a>" not in part and ">quiet</a>" not in part


# --- The fragment the page polls --------------------------------------------------------


def test_the_fragment_has_the_sections_without_the_page_around_them(admin_client: Client) -> None:
    incident = failing("checkout-api")
    # An error message waits for the next page (the redirect is not followed).
    admin_client.post(f"/oncall/incidents/{incident.pk}/note/", {"text": ""})
    response = admin_client.get(FRAGMENT)
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    html = page_of(response)
    assert html.lstrip().startswith('<div class="sections" data-oncall-sections')
    for section in ("Open incidents", "Monitors failing now", "On call now", "My next shifts"):
        assert section in html
    assert "checkout-api is down" in html
    assert f"/oncall/incidents/{incident.pk}/acknowledge/" in html
    assert 'name="csrfmiddlewaretoken"' in html  # the swapped-in forms still post
    for chrome in ("<html", "<head", "<body", "<script", "<h1", "Log out"):
        assert chrome not in html
    # Polling does not swallow a message the page has not shown yet.
    assert "a note needs some text" in page_of(admin_client.get(CONSOLE))


def test_without_javascript_it_shows_when_it_was_updated_and_a_refresh_link(
    admin_client: Client, clock: time_machine.Coordinates
) -> None:
    html = page_of(admin_client.get(CONSOLE))
    assert re.search(r"Updated <time[^>]*>02:48:00 UTC</time>", html)
    assert '<a id="oncall-refresh" href="/oncall/">Refresh</a>' in html
    assert "http-equiv" not in html.lower()  # no meta refresh: it would lose typed notes
    assert 'data-fragment-url="/oncall/fragment/"' in html
    assert 'data-poll-seconds="15"' in html


# --- Safety -----------------------------------------------------------------------------


def test_hostile_text_is_escaped_everywhere(admin_client: Client, admin_user: User) -> None:
    Contact.objects.create(name=HOSTILE, user=admin_user)
    schedule = OnCallSchedule.objects.create(name=HOSTILE)
    rotation(schedule, 1, Contact.objects.get(user=admin_user))
    mon = monitor(HOSTILE)
    flip(mon, Monitor.Status.DOWN, HOSTILE)
    Monitor.objects.filter(pk=mon.pk).update(last_reason=HOSTILE)
    tick()
    incident = the_incident(mon)
    act(admin_client, incident, "note", text=HOSTILE)
    response = act(admin_client, incident, "acknowledge")

    for html in (page_of(response), page_of(admin_client.get(FRAGMENT))):
        assert HOSTILE not in html
        assert "alert(1)" not in html.replace(ESCAPED, "")
        assert html.count(ESCAPED) >= 5  # monitor, title, reason, note, contact, schedule
    assert f"Acknowledged #{incident.pk} {ESCAPED} is down" in page_of(response)


class ScriptAudit(HTMLParser):
    """Collects what a Content-Security-Policy without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script":
            self.scripts.append(named)
            self.in_script = True
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action", "formaction") and (
                value or ""
            ).strip().lower().startswith("javascript:"):
                self.inline.append(f"<{tag} {name}=javascript:...>")
        if tag == "style":
            self.inline.append("<style>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.inline.append(f"inline script: {data[:40]!r}")


def test_the_page_has_no_inline_script_and_no_inline_event_handlers(admin_client: Client) -> None:
    failing("checkout-api")
    for path in (CONSOLE, FRAGMENT):
        audit = ScriptAudit()
        audit.feed(page_of(admin_client.get(path)))
        assert audit.inline == []
        for script in audit.scripts:
            assert script.get("src"), script
    audit = ScriptAudit()
    audit.feed(page_of(admin_client.get(CONSOLE)))
    assert len(audit.scripts) == 1
    assert re.fullmatch(r"/static/incidents/console\.[0-9a-f]+\.js", audit.scripts[0]["src"] or "")
