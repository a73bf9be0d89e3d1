"""Acknowledge from the link in a page, from the API, and from the admin: one service behind all."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from alerts.models import Notification
from incidents.links import ack_token, ack_url
from incidents.models import Incident
from tests.incidents.paging import (
    contact,
    fail,
    monitor,
    policy,
    the_incident,
    tick,
    timeline,
    webhook_channel,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def incident() -> Incident:
    alice = contact("Alice", email="alice@example.test", rules=[("email", 0)])
    bob = contact("Bob", email="bob@example.test")
    policy("default", steps=[{"contacts": [alice]}, {"delay_minutes": 5, "contacts": [bob]}])
    api = monitor("api", runbook_url="https://wiki.example.test/runbooks/api")
    fail(api, "HTTP status is 500, expected one of 200-299")
    tick()
    return the_incident(api)


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_the_page_carries_a_link_whose_get_shows_the_incident_and_acknowledges_nothing(
    incident: Incident, client: Client
) -> None:
    page = Notification.objects.get(incident=incident, transport="email")
    link = page.message["incidents"][0]["ack_url"]
    assert link.startswith("http://") and "/ack/" in link
    response = client.get(path_of(link))
    assert response.status_code == 200
    html = response.content.decode()
    assert "api is down" in html
    assert "HTTP status is 500, expected one of 200-299" in html
    assert "https://wiki.example.test/runbooks/api" in html
    assert '<button type="submit">Acknowledge</button>' in html
    incident.refresh_from_db()
    assert incident.status == "triggered"  # a mail scanner opening the link changes nothing


def test_posting_the_link_acknowledges_as_the_person_paged_and_stops_escalation(
    incident: Incident,
) -> None:
    client = Client(enforce_csrf_checks=True)
    alice = incident.notifications.get(transport="email").contact
    path = path_of(ack_url(incident.pk, alice.pk))
    page = client.get(path)
    token = page.cookies["csrftoken"].value
    response = client.post(path, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.status == "acknowledged"
    assert incident.acknowledged_by == "Alice"
    assert "acknowledged: acknowledged by Alice via acknowledge link" in timeline(incident)
    assert "Acknowledged by Alice" in client.get(path).content.decode()
    # Replaying the POST is a no-op.
    client.post(path, {"csrfmiddlewaretoken": token})
    incident.refresh_from_db()
    assert incident.acknowledged_by == "Alice"
    assert [e.kind for e in incident.events.all()].count("acknowledged") == 1
    with time_machine.travel(timezone.now() + timedelta(minutes=30), tick=False):
        tick()
    assert not incident.notifications.filter(contact__name="Bob").exists()


def test_a_tampered_link_gets_400(incident: Incident, client: Client) -> None:
    token = ack_token(incident.pk)
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert client.get(f"/ack/{forged}/").status_code == 400
    assert client.post(f"/ack/{forged}/").status_code == 400
    assert client.get("/ack/not-a-token/").status_code == 400
    incident.refresh_from_db()
    assert incident.status == "triggered"


def test_an_expired_link_shows_a_clear_page_with_a_login_link(
    incident: Incident, client: Client, settings
) -> None:
    path = path_of(ack_url(incident.pk))
    with time_machine.travel(
        timezone.now() + timedelta(seconds=settings.ACK_LINK_MAX_AGE + 60), tick=False
    ):
        response = client.get(path)
        posted = client.post(path)
    assert response.status_code == 410
    html = response.content.decode()
    assert "This acknowledge link has expired" in html
    assert f"/admin/login/?next=/admin/incidents/incident/{incident.pk}/change/" in html
    assert posted.status_code == 410
    incident.refresh_from_db()
    assert incident.status == "triggered"


@pytest.fixture
def api_client(admin_user) -> Client:
    token = Token.objects.create(user=admin_user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


def test_the_api_acknowledges_resolves_and_takes_notes(
    incident: Incident, api_client: Client
) -> None:
    base = f"/api/v1/incidents/{incident.pk}"
    listed = api_client.get("/api/v1/incidents/?status=open").json()
    assert [item["id"] for item in listed["results"]] == [incident.pk]
    response = api_client.post(f"{base}/acknowledge")
    assert response.status_code == 200
    assert response.json()["status"] == "acknowledged"
    assert response.json()["acknowledged_by"] == "admin"
    note = api_client.post(
        f"{base}/notes", {"text": "Rolling back deploy 4121"}, content_type="application/json"
    )
    assert note.status_code == 201
    assert note.json()["message"] == "Rolling back deploy 4121"
    empty = api_client.post(f"{base}/notes", {"text": ""}, content_type="application/json")
    assert empty.status_code == 400 and "text" in empty.json()
    resolved = api_client.post(
        f"{base}/resolve", {"note": "rolled back"}, content_type="application/json"
    )
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolution_note"] == "rolled back"
    again = api_client.post(f"{base}/acknowledge")
    assert again.status_code == 409
    assert api_client.get("/api/v1/incidents/?status=bogus").status_code == 400
    assert Client().post(f"{base}/acknowledge").status_code in (401, 403)


def test_the_admin_buttons_call_the_same_service(incident: Incident, admin_client: Client) -> None:
    page = admin_client.get(f"/admin/incidents/incident/{incident.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "level 1: paging Alice (email)" in html  # the timeline
    act = f"/admin/incidents/incident/{incident.pk}/act/"
    admin_client.post(act, {"action": "acknowledge"})
    admin_client.post(act, {"action": "note", "text": "looking at the load balancer"})
    admin_client.post(act, {"action": "resolve", "text": "LB config reverted"})
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert incident.resolution_note == "LB config reverted"
    kinds = [e.kind for e in incident.events.all()]
    assert kinds[-3:] == ["acknowledged", "note", "resolved"]


def test_the_admin_shows_mtta_and_mttr(incident: Incident, admin_client: Client) -> None:
    Incident.objects.filter(pk=incident.pk).update(
        acknowledged_at=incident.opened_at + timedelta(minutes=4),
        resolved_at=incident.opened_at + timedelta(minutes=90),
        status="resolved",
    )
    listing = admin_client.get("/admin/incidents/incident/").content.decode()
    assert "mean time to acknowledge <strong>4 min</strong>" in listing
    assert "mean time to resolve <strong>90 min</strong>" in listing
    report = admin_client.get("/admin/incidents/incident/report/").content.decode()
    assert "<td>api</td><td>1</td><td>4 min</td><td>90 min</td>" in report


def test_declaring_an_incident_in_the_admin_pages(admin_client: Client) -> None:
    ops = webhook_channel("ops")
    policy("crit", default_for="critical", steps=[{"channels": [ops]}])
    response = admin_client.post(
        "/admin/incidents/incident/add/",
        {
            "title": "Checkout failing for EU customers",
            "severity": "critical",
            "reason": "reports from support",
        },
    )
    assert response.status_code == 302
    incident = Incident.objects.get()
    assert incident.title == "Checkout failing for EU customers"
    assert incident.notifications.filter(channel=ops).count() == 1
