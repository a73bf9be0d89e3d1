"""Paging: which policy an incident follows, who each step reaches, what is sent.

Everything here runs inside the caller's transaction with the incident row
locked, and only writes Notification rows: delivery happens after commit
(alerts.delivery), so a rolled-back step sends nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from alerts import delivery
from alerts.models import (
    Channel,
    Contact,
    ContactRule,
    EscalationPolicy,
    Notification,
    ScheduleLayer,
)
from alerts.oncall import on_call
from alerts.transports.base import Message
from incidents.messages import build_message, grouped_message, incident_view
from incidents.models import Incident, IncidentEvent

logger = logging.getLogger(__name__)

Event = Notification.Event
# The transport behind each personal contact method.
METHOD_TRANSPORT = {ContactRule.Method.EMAIL: "email", ContactRule.Method.SMS: "twilio"}
METHOD_LABEL = {ContactRule.Method.EMAIL: "email", ContactRule.Method.SMS: "SMS"}
STORM_WINDOW = 60  # seconds


@dataclass(frozen=True)
class Target:
    """One destination of a step: a channel, or one contact method of a person."""

    name: str
    transport: str
    channel_id: int | None = None
    contact_id: int | None = None
    address: str = ""
    delay_minutes: int = 0
    label: str = ""

    @property
    def slug(self) -> str:
        if self.channel_id is not None:
            return f"channel{self.channel_id}"
        return f"contact{self.contact_id}:{self.transport}:{self.delay_minutes}"

    def describe(self) -> str:
        when = f" after {self.delay_minutes} min" if self.delay_minutes else ""
        return f"{self.name} ({self.label}{when})"


def pick_policy(incident: Incident) -> EscalationPolicy | None:
    """The monitor's own policy if it names one, else the default for the severity."""
    if incident.monitor_id:
        own = EscalationPolicy.objects.filter(monitors=incident.monitor_id).order_by("id").first()
        if own is not None:
            return own
    return EscalationPolicy.objects.filter(default_for=incident.severity).first()


def snapshot(policy: EscalationPolicy) -> dict[str, Any]:
    """The policy as plain data, copied into the incident when paging starts.

    `run` names this paging run: a re-opened incident pages afresh, and the
    notification keys of one run never collide with another's.
    """
    steps = policy.steps.prefetch_related("contacts", "layers__schedule", "channels")
    return {
        "run": uuid.uuid4().hex[:12],
        "id": policy.pk,
        "name": policy.name,
        "repeat": policy.repeat,
        "repeat_after_minutes": policy.repeat_after_minutes,
        "reminder_minutes": policy.reminder_minutes,
        "notify_on_acknowledge": policy.notify_on_acknowledge,
        "notify_on_resolve": policy.notify_on_resolve,
        "steps": [
            {
                "delay_minutes": step.delay_minutes,
                "contacts": [{"id": c.pk, "name": c.name} for c in step.contacts.all()],
                "layers": [{"id": layer.pk, "name": str(layer)} for layer in step.layers.all()],
                "channels": [{"id": ch.pk, "name": ch.name} for ch in step.channels.all()],
            }
            for step in steps
        ],
    }


def paging_run(incident: Incident) -> str:
    return (incident.policy or {}).get("run", "run0")


def contact_targets(contact: Contact) -> list[Target]:
    """A person's own rules; without rules, every method they can receive, at once."""
    rules = [(r.method, r.delay_minutes) for r in contact.rules.all()]
    if not rules:
        rules = [(m, 0) for m, ok in (("email", contact.email), ("sms", contact.phone)) if ok]
    targets = []
    for method, delay in rules:
        address = contact.email if method == ContactRule.Method.EMAIL else contact.phone
        if address:
            targets.append(
                Target(
                    name=contact.name,
                    transport=METHOD_TRANSPORT[method],
                    contact_id=contact.pk,
                    address=address,
                    delay_minutes=delay,
                    label=METHOD_LABEL[method],
                )
            )
    return targets


def step_targets(step: dict[str, Any], now: datetime) -> tuple[list[Target], list[str]]:
    """Who a snapshot step reaches now, and notes on whom it could not reach."""
    notes: list[str] = []
    people: dict[int, Contact] = {}
    contacts = Contact.objects.prefetch_related("rules").in_bulk(
        [c["id"] for c in step["contacts"]]
    )
    for item in step["contacts"]:
        if item["id"] in contacts:
            people.setdefault(item["id"], contacts[item["id"]])
        else:
            notes.append(f"contact {item['name']} no longer exists")
    layers = ScheduleLayer.objects.select_related("schedule").in_bulk(
        [layer["id"] for layer in step["layers"]]
    )
    for item in step["layers"]:
        layer = layers.get(item["id"])
        person = on_call(layer, now) if layer is not None else None
        if person is None:
            notes.append(f"nobody is on call in {item['name']}")
        else:
            people.setdefault(person.pk, person)
    targets = [t for person in people.values() for t in contact_targets(person)]
    for person in people.values():
        if not contact_targets(person):
            notes.append(f"{person.name} has no email address or phone number")
    channels = Channel.objects.in_bulk([c["id"] for c in step["channels"]])
    for item in step["channels"]:
        channel = channels.get(item["id"])
        if channel is None or not channel.enabled:
            notes.append(f"channel {item['name']} is disabled or gone")
            continue
        targets.append(
            Target(
                name=channel.name,
                transport=channel.kind,
                channel_id=channel.pk,
                label=channel.get_kind_display(),
            )
        )
    return targets, notes


def in_storm(now: datetime) -> bool:
    """More incidents opened in the last minute than STORM_THRESHOLD."""
    since = now - timedelta(seconds=STORM_WINDOW)
    return Incident.objects.filter(opened_at__gt=since).count() > settings.STORM_THRESHOLD


def notify(
    incident: Incident, event: str, targets: list[Target], key: str, now: datetime, actor: str = ""
) -> list[int]:
    """Write one notification per target (once per key); returns the new rows' ids."""
    grouped = event == Event.TRIGGER and in_storm(now)
    created = []
    for target in targets:
        if grouped:
            row = join_group(incident, target, now)
        else:
            row, new = Notification.objects.get_or_create(
                key=f"{key}:{target.slug}",
                defaults={
                    **destination_fields(target),
                    "incident": incident,
                    "event": event,
                    "message": build_message(incident, event, target.contact_id, actor).to_dict(),
                    "not_before": now + timedelta(minutes=target.delay_minutes),
                    "created_at": now,
                },
            )
            row = row if new else None
        if row is not None:
            created.append(row.pk)
    return created


def destination_fields(target: Target) -> dict[str, Any]:
    return {
        "channel_id": target.channel_id,
        "contact_id": target.contact_id,
        "transport": target.transport,
        "address": target.address,
    }


def join_group(incident: Incident, target: Target, now: datetime) -> Notification | None:
    """Add the incident to this destination's grouped message for the current minute.

    The grouped message waits for the end of its minute, so every incident of
    the storm that opens meanwhile joins it; returns the row when it is new.
    """
    bucket = int(now.timestamp()) // STORM_WINDOW
    view = incident_view(incident, target.contact_id)
    for offset in (0, 1):  # the current minute's message may already be out
        key = f"storm:{target.slug}:{bucket + offset}"
        row = Notification.objects.select_for_update().filter(key=key).first()
        if row is None:
            send_at = datetime.fromtimestamp((bucket + offset + 1) * STORM_WINDOW, tz=now.tzinfo)
            return Notification.objects.create(
                key=key,
                event=Event.GROUPED,
                message=grouped_message([view]).to_dict(),
                not_before=max(send_at, now),
                created_at=now,
                **destination_fields(target),
            )
        if row.status == Notification.Status.PENDING:
            views = Message.from_dict(row.message).incidents
            if all(v.id != incident.pk for v in views):
                row.message = grouped_message([*views, view]).to_dict()
                row.save(update_fields=["message"])
            return None
    return None


def record(
    incident: Incident, kind: str, message: str, at: datetime, actor: str = "", **data: Any
) -> IncidentEvent:
    return IncidentEvent.objects.create(
        incident=incident, kind=kind, message=message, at=at, actor=actor, data=data
    )


def run_step(incident: Incident, now: datetime) -> list[int]:
    """Page the targets of the incident's current step."""
    steps = incident.policy["steps"]
    step = steps[incident.step]
    targets, notes = step_targets(step, now)
    key = (
        f"incident{incident.pk}:{paging_run(incident)}:step{incident.step}:repeat{incident.repeat}"
    )
    ids = notify(incident, Event.TRIGGER, targets, key, now)
    level = incident.step + 1
    who = ", ".join(t.describe() for t in targets) or "nobody"
    again = f" (repeat {incident.repeat + 1})" if incident.repeat else ""
    text = f"level {level}{again}: paging {who}"
    if notes:
        text += "; " + "; ".join(notes)
    kind = IncidentEvent.Kind.NOTIFIED if level == 1 else IncidentEvent.Kind.ESCALATED
    record(incident, kind, text, now, level=level, repeat=incident.repeat)
    return ids


def send_reminder(incident: Incident, now: datetime) -> list[int]:
    """Remind everyone paged so far that the incident is still unacknowledged."""
    targets = paged_targets(incident)
    ids = notify(
        incident,
        Event.REMINDER,
        targets,
        f"incident{incident.pk}:{paging_run(incident)}:reminder{incident.reminders}",
        now,
    )
    record(
        incident,
        IncidentEvent.Kind.NOTIFIED,
        f"reminder {incident.reminders + 1} sent to "
        + (", ".join(t.describe() for t in targets) or "nobody"),
        now,
    )
    return ids


def paged_targets(incident: Incident) -> list[Target]:
    """Distinct destinations that received a page of this incident."""
    rows = (
        incident.notifications.filter(
            event__in=[Event.TRIGGER, Event.REMINDER, Event.GROUPED],
            status__in=[Notification.Status.SENT, Notification.Status.SENDING],
        )
        .select_related("channel", "contact")
        .order_by("id")
    )
    seen: dict[tuple[Any, ...], Target] = {}
    for row in rows:
        name = row.channel.name if row.channel_id else row.contact.name
        target = Target(
            name=name,
            transport=row.transport,
            channel_id=row.channel_id,
            contact_id=row.contact_id,
            address=row.address,
            label=row.transport,
        )
        seen.setdefault((row.channel_id, row.contact_id, row.transport, row.address), target)
    # Grouped storm messages are not followed up per incident: in a storm,
    # one "acknowledged" message per incident would be the noise grouping avoids.
    return list(seen.values())


def advance(incident: Incident, now: datetime) -> list[int]:
    """Run what is due for a paging incident and set when it is next due."""
    policy = incident.policy or {}
    steps = policy.get("steps") or []
    if incident.step < len(steps):
        ids = run_step(incident, now)
        incident.step += 1
        if incident.step < len(steps):
            wait = steps[incident.step]["delay_minutes"]
        elif incident.repeat + 1 < policy.get("repeat", 1):
            incident.step, incident.repeat = 0, incident.repeat + 1
            wait = policy["repeat_after_minutes"] + steps[0]["delay_minutes"]
        elif policy.get("reminder_minutes"):
            wait = policy["reminder_minutes"]
        else:
            wait = None
    elif policy.get("reminder_minutes"):
        ids = send_reminder(incident, now)
        incident.reminders += 1
        wait = policy["reminder_minutes"]
    else:
        ids, wait = [], None
    incident.next_escalation_at = now + timedelta(minutes=wait) if wait is not None else None
    return ids


def schedule_delivery(ids: list[int]) -> None:
    if ids:
        delivery.schedule(ids)


def cancel_pending_pages(incident: Incident) -> int:
    """Pages not yet sent (a personal rule's delay) are not sent once acknowledged."""
    return incident.notifications.filter(
        status__in=[Notification.Status.PENDING, Notification.Status.RETRY],
        event__in=[Event.TRIGGER, Event.REMINDER],
    ).update(status=Notification.Status.CANCELLED, last_error="incident no longer needs paging")


def announce(incident: Incident, event: str, actor: str, now: datetime) -> list[int]:
    """Tell everyone already paged that the incident was acknowledged or resolved."""
    policy = incident.policy or {}
    wanted = "notify_on_acknowledge" if event == Event.ACKNOWLEDGED else "notify_on_resolve"
    if not policy.get(wanted, False):
        return []
    targets = paged_targets(incident)
    if not targets:
        return []
    key = f"incident{incident.pk}:{event}:{incident.escalation_token}"
    return notify(incident, event, targets, key, now, actor=actor)
