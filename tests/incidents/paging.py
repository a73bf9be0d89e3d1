"""What the incident tests share: monitors that flip, policies, and running the paging machinery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from alerts.models import (
    Channel,
    Contact,
    ContactRule,
    EscalationPolicy,
    EscalationStep,
    Notification,
)
from checks.models import Monitor, StatusChange
from incidents import services
from incidents.models import Incident


def monitor(name: str = "api", **fields: Any) -> Monitor:
    fields.setdefault("target", "https://api.example.test/health")
    fields.setdefault("status", Monitor.Status.UP)
    return Monitor.objects.create(name=name, kind="http", **fields)


def flip(mon: Monitor, to: str, reason: str = "", at: datetime | None = None) -> StatusChange:
    """What the checks app writes when a monitor's status changes."""
    at = at or timezone.now()
    change = StatusChange.objects.create(
        monitor=mon, from_status=mon.status, to_status=to, reason=reason, created_at=at
    )
    Monitor.objects.filter(pk=mon.pk).update(status=to, status_since=at)
    mon.refresh_from_db()
    return change


def fail(mon: Monitor, reason: str = "HTTP status is 500, expected one of 200-299") -> StatusChange:
    return flip(mon, Monitor.Status.DOWN, reason)


def tick() -> None:
    """One turn of the machinery: status changes, suppression review, due escalations."""
    services.process_status_changes()
    services.review_suppressed()
    for incident_id, token in services.due_escalations():
        services.escalate(incident_id, token)


def contact(
    name: str, email: str = "", phone: str = "", rules: list[tuple[str, int]] | None = None
) -> Contact:
    person = Contact.objects.create(name=name, email=email, phone=phone)
    for method, delay in rules or []:
        ContactRule.objects.create(contact=person, method=method, delay_minutes=delay)
    return person


def policy(
    name: str = "default",
    steps: list[dict[str, Any]] | None = None,
    default_for: str = "high",
    **fields: Any,
) -> EscalationPolicy:
    """A policy whose steps are dicts of delay_minutes, contacts, layers, channels."""
    made = EscalationPolicy.objects.create(name=name, default_for=default_for, **fields)
    for position, spec in enumerate(steps or []):
        step = EscalationStep.objects.create(
            policy=made, position=position, delay_minutes=spec.get("delay_minutes", 0)
        )
        step.contacts.set(spec.get("contacts", []))
        step.layers.set(spec.get("layers", []))
        step.channels.set(spec.get("channels", []))
    return made


def webhook_channel(
    name: str = "ops-webhook", url: str = "https://hooks.example.test/x"
) -> Channel:
    return Channel.objects.create(name=name, kind="webhook", config={"url": url})


def sent_to(incident: Incident | None = None, **filters: Any) -> list[tuple[str, str, str]]:
    """(event, transport, destination) of notification rows written, oldest first."""
    rows = Notification.objects.filter(**filters).select_related("channel", "contact")
    if incident is not None:
        rows = rows.filter(incident=incident)
    return [(n.event, n.transport, n.destination) for n in rows.order_by("created_at", "id")]


def the_incident(mon: Monitor) -> Incident:
    return Incident.objects.get(monitor=mon)


def timeline(incident: Incident) -> list[str]:
    return [f"{e.kind}: {e.message}" for e in incident.events.order_by("at", "id")]
