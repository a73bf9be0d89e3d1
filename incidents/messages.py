"""The messages an incident sends: built here, carried by alerts' transports."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.urls import reverse

from alerts.models import Notification
from alerts.transports.base import Incident as IncidentView
from alerts.transports.base import Message
from incidents.links import ack_url
from incidents.models import Incident

Event = Notification.Event


def dedup_key(incident: Incident) -> str:
    return f"watchpost-incident-{incident.pk}"


def incident_view(incident: Incident, contact_id: int | None = None) -> IncidentView:
    monitor = incident.monitor
    admin_path = reverse("admin:incidents_incident_change", args=[incident.pk])
    return IncidentView(
        id=incident.pk,
        title=incident.title,
        monitor=monitor.name if monitor else "",
        reason=incident.reason,
        severity=incident.severity,
        status=incident.status,
        opened_at=incident.opened_at.isoformat(),
        runbook_url=monitor.runbook_url if monitor else "",
        url=f"{settings.SITE_URL}{admin_path}",
        ack_url=ack_url(incident.pk, contact_id) if incident.is_open else "",
    )


def summary_line(incident: Incident, event: str, actor: str = "") -> str:
    head = f"[{incident.severity.upper()}] {incident.title}"
    if event == Event.ACKNOWLEDGED:
        return f"Acknowledged by {actor}: {incident.title}"
    if event == Event.RESOLVED:
        by = f" by {actor}" if actor else ""
        return f"Resolved{by}: {incident.title}"
    if event == Event.REMINDER:
        return f"Still unacknowledged: {head}"
    return f"{head}: {incident.reason}" if incident.reason else head


def build_message(
    incident: Incident, event: str, contact_id: int | None = None, actor: str = ""
) -> Message:
    return Message(
        event=event,
        summary=summary_line(incident, event, actor),
        incidents=(incident_view(incident, contact_id),),
        actor=actor,
        dedup_key=dedup_key(incident),
        site_url=settings.SITE_URL,
    )


def grouped_message(views: Sequence[IncidentView]) -> Message:
    """One message for many incidents opened in a storm."""
    names = ", ".join(view.monitor or view.title for view in views[:5])
    more = f" and {len(views) - 5} more" if len(views) > 5 else ""
    return Message(
        event=Event.GROUPED,
        summary=f"{len(views)} incidents opened: {names}{more}",
        incidents=tuple(views),
        dedup_key=f"watchpost-storm-{views[0].id}",
        site_url=settings.SITE_URL,
    )
