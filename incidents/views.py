"""The acknowledge page a page links to.

Mail scanners and chat unfurlers open links, so GET only shows the incident
and a button; only POST acknowledges.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from alerts.models import Contact
from incidents import services
from incidents.links import AckToken, ExpiredLink, read_ack_token
from incidents.models import Incident


@require_http_methods(["GET", "POST"])
def acknowledge_link(request: HttpRequest, token: str) -> HttpResponse:
    try:
        ack = read_ack_token(token)
    except ExpiredLink as expired:
        return expired_page(request, expired.token)
    except signing.BadSignature:
        return render(request, "incidents/ack_invalid.html", status=400)
    incident = Incident.objects.select_related("monitor").filter(pk=ack.incident_id).first()
    if incident is None:
        return render(request, "incidents/ack_invalid.html", status=404)
    if request.method == "POST":
        services.acknowledge(incident.pk, actor=actor_of(request, ack), via="acknowledge link")
        return redirect(request.path)  # post/redirect/get: a reload does not re-post
    return render(request, "incidents/ack.html", {"incident": incident})


def actor_of(request: HttpRequest, ack: AckToken) -> str:
    """The person the page went to; else the logged-in user; else the link itself."""
    if ack.contact_id is not None:
        contact = Contact.objects.filter(pk=ack.contact_id).first()
        if contact is not None:
            return contact.name
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.get_full_name() or user.get_username()
    return "someone with the acknowledge link"


def expired_page(request: HttpRequest, ack: AckToken) -> HttpResponse:
    admin_url = reverse("admin:incidents_incident_change", args=[ack.incident_id])
    if request.method == "POST" and request.user.is_authenticated:
        return redirect(admin_url)
    login = redirect_to_login(admin_url, reverse("admin:login"))
    return render(
        request, "incidents/ack_expired.html", {"login_url": login["Location"]}, status=410
    )
