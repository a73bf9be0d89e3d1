"""Telling the public: publishing incidents, posting timeline updates, notifying subscribers.

Every change to a public incident goes through `publish` or `post_update`,
which lock the row, change it in a short transaction and, once it commits,
hand the notifications to Celery (incidents.statuspage.tasks): one task fans
an update out, one task per subscriber sends it, so a slow or broken
subscriber never holds up the others.

What goes out is public only: page title, the incident's public title,
impact and updates, and component names — never monitors or reasons.
"""

from __future__ import annotations

import json
import logging
import smtplib
import zoneinfo
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from alerts.transports.base import TransportError, one_line, shorten
from alerts.transports.email import failure as email_failure
from alerts.transports.http import PERMANENT_STATUSES, post
from alerts.transports.webhook import SIGNATURE_HEADER, signature
from incidents.models import PublicIncident, PublicUpdate, StatusPage, Subscriber
from incidents.statuspage import derive
from incidents.statuspage.pages import incident_url, page_url, public_url

logger = logging.getLogger(__name__)

Status = PublicIncident.Status
BODY_LIMIT = 10_000
AUTHOR_LIMIT = 200
# A webhook answering these has gone away: the subscription is removed.
GONE_STATUSES = frozenset({404, 410})
EVENT_HEADER = "X-Watchpost-Event"


class Gone(TransportError):
    """The webhook receiver says the subscription no longer exists (404/410)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


# --- Publishing and updates ---------------------------------------------------------------


def clean_update(status: str, body: str) -> tuple[str, str]:
    """The update's status and body, or ValueError naming the field that is wrong."""
    if status not in Status.values:
        raise ValueError(f"status: must be one of {', '.join(Status.values)}, got {status!r}")
    body = (body or "").strip()
    if not body:
        raise ValueError("body: must not be empty; say what is happening")
    if len(body) > BODY_LIMIT:
        raise ValueError(f"body: at most {BODY_LIMIT} characters, got {len(body)}")
    return status, body


def locked(public_incident: PublicIncident) -> PublicIncident:
    return PublicIncident.objects.select_for_update().get(pk=public_incident.pk)


def publish(public_incident: PublicIncident, author: str) -> None:
    """Put a draft on the page; subscribers hear its latest update, if it has one."""
    with transaction.atomic():
        incident = locked(public_incident)
        if incident.published_at is None:
            incident.published_at = timezone.now()
            incident.save(update_fields=["published_at", "updated_at"])
            latest = incident.updates.order_by("-created_at", "-id").first()
            if latest is not None:
                announce_on_commit(latest.pk)
            logger.info("public incident %s published by %s", incident.pk, author)
    public_incident.published_at = incident.published_at
    public_incident.updated_at = incident.updated_at


def post_update(
    public_incident: PublicIncident, status: str, body: str, author: str
) -> PublicUpdate:
    """Add an update to the timeline, move the incident to its status and publish it."""
    status, body = clean_update(status, body)
    now = timezone.now()
    with transaction.atomic():
        incident = locked(public_incident)
        update = PublicUpdate.objects.create(
            incident=incident, status=status, body=body, author=author[:AUTHOR_LIMIT],
            created_at=now,
        )  # fmt: skip
        incident.status = status
        if status == Status.RESOLVED:
            incident.resolved_at = incident.resolved_at or now
        else:
            incident.resolved_at = None  # re-opened
        incident.published_at = incident.published_at or now
        incident.save(update_fields=["status", "resolved_at", "published_at", "updated_at"])
        announce_on_commit(update.pk)
    for name in ("status", "resolved_at", "published_at", "updated_at"):
        setattr(public_incident, name, getattr(incident, name))
    logger.info("public incident %s: %s update by %s", incident.pk, status, author)
    return update


def announce_on_commit(update_id: int) -> None:
    transaction.on_commit(partial(enqueue_announcement, update_id), robust=True)


def enqueue_announcement(update_id: int) -> None:
    from incidents.statuspage import tasks

    tasks.announce_update.delay(update_id)


# --- Fanning out --------------------------------------------------------------------------


def announce(update_id: int) -> int:
    """Queue the update for each confirmed subscriber of its page; returns how many."""
    from incidents.statuspage import tasks

    update = PublicUpdate.objects.select_related("incident").filter(pk=update_id).first()
    if update is None or not update.incident.is_published:
        return 0
    subscribers = Subscriber.objects.filter(
        page_id=update.incident.page_id, confirmed_at__isnull=False
    ).values_list("pk", flat=True)
    count = 0
    for subscriber_id in subscribers.iterator():
        tasks.deliver_update.delay(subscriber_id, update_id)
        count += 1
    return count


def deliver_update(subscriber_id: int, update_id: int) -> str:
    """Send one update to one subscriber: "sent", "skipped", "failed" or "unsubscribed".

    Raises TransportError only for a temporary failure (the task retries it).
    """
    subscriber = (
        Subscriber.objects.select_related("page")
        .filter(pk=subscriber_id, confirmed_at__isnull=False)
        .first()
    )
    update = PublicUpdate.objects.select_related("incident").filter(pk=update_id).first()
    if subscriber is None or update is None or update.incident.page_id != subscriber.page_id:
        return "skipped"  # unsubscribed (or the update deleted) since it was queued
    if not update.incident.is_published:
        return "skipped"
    if subscriber.kind == Subscriber.Kind.EMAIL:
        return attempt(subscriber, partial(send_update_email, subscriber, update))
    payload = update_payload(subscriber, update)
    return attempt(subscriber, partial(send_webhook, subscriber, "incident.update", payload))


def deliver_confirmation(subscriber_id: int) -> str:
    """Mail the opt-in link to a subscriber who has not confirmed yet."""
    subscriber = Subscriber.objects.select_related("page").filter(pk=subscriber_id).first()
    if subscriber is None or subscriber.confirmed_at or subscriber.kind != Subscriber.Kind.EMAIL:
        return "skipped"
    return attempt(subscriber, partial(send_confirmation_email, subscriber))


def attempt(subscriber: Subscriber, send: partial[None]) -> str:
    """Run one send; permanent failures end here, temporary ones go back to the task."""
    try:
        send()
    except TransportError as exc:
        if not exc.permanent:
            logger.warning("status subscriber %s: %s (temporary)", subscriber.pk, exc.message)
            raise
        return give_up(subscriber, exc)
    logger.info("status subscriber %s notified (%s)", subscriber.pk, subscriber.kind)
    return "sent"


def give_up(subscriber: Subscriber, exc: TransportError) -> str:
    if isinstance(exc, Gone):
        Subscriber.objects.filter(pk=subscriber.pk).delete()
        logger.warning(
            "status subscriber %s unsubscribed: %s (the webhook is gone)",
            subscriber.pk, exc.message,
        )  # fmt: skip
        return "unsubscribed"
    logger.warning("status subscriber %s: %s (not retried)", subscriber.pk, exc.message)
    return "failed"


# --- Email --------------------------------------------------------------------------------


def send_email(subscriber: Subscriber, subject: str, template: str, data: dict[str, Any]) -> None:
    unsubscribe = public_url(subscriber.page, "status-unsubscribe", token=subscriber.token)
    data = {**data, "page": subscriber.page, "unsubscribe_url": unsubscribe}
    email = EmailMultiAlternatives(
        subject=shorten(one_line(subject), 200),
        body=render_to_string(f"incidents/status_email/{template}.txt", data),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[subscriber.email],
        headers={
            "Auto-Submitted": "auto-generated",
            # RFC 8058 one-click: the unsubscribe URL acts on a POST without a form.
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    email.attach_alternative(
        render_to_string(f"incidents/status_email/{template}.html", data), "text/html"
    )
    try:
        email.send()
    except (smtplib.SMTPException, OSError) as exc:
        raise email_failure(exc) from exc


def send_update_email(subscriber: Subscriber, update: PublicUpdate) -> None:
    incident, page = update.incident, subscriber.page
    subject = f"[{page.title}] {incident.title} — {update.get_status_display()}"
    data = {
        "incident": incident,
        "update": update,
        "posted_at": local_time(update.created_at, page),
        "incident_url": incident_url(page, incident.pk),
    }
    send_email(subscriber, subject, "update", data)


def send_confirmation_email(subscriber: Subscriber) -> None:
    page = subscriber.page
    confirm = public_url(page, "status-subscribe-confirm", token=subscriber.token)
    subject = f"[{page.title}] Confirm your subscription"
    send_email(subscriber, subject, "confirm", {"confirm_url": confirm})


def local_time(moment: datetime, page: StatusPage) -> str:
    local = moment.astimezone(zoneinfo.ZoneInfo(page.timezone))
    return local.strftime("%Y-%m-%d %H:%M %Z")


# --- Webhooks -----------------------------------------------------------------------------


def send_webhook(subscriber: Subscriber, event: str, payload: dict[str, Any]) -> None:
    """POST the signed payload; 2xx is success, 404/410 means gone, 5xx/429 may pass later."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = {EVENT_HEADER: event, SIGNATURE_HEADER: signature(subscriber.secret, body)}
    response = post(
        subscriber.url, body, service="webhook", content_type="application/json",
        headers=headers, secrets=(subscriber.secret,),
    )  # fmt: skip
    if response.ok:
        return
    if response.status in GONE_STATUSES:
        raise Gone(f"webhook answered HTTP {response.status}")
    raise response.error(permanent=response.status in PERMANENT_STATUSES)


def page_payload(page: StatusPage, now: datetime) -> tuple[dict[str, Any], dict[int, str]]:
    """Statuspage's webhook `page` object, and each component's status."""
    components = list(page.components.all())
    statuses = derive.component_statuses(components, now)
    open_incidents = page.incidents.filter(published_at__isnull=False).exclude(
        status=Status.RESOLVED
    )
    overall = derive.overall(statuses.values(), list(open_incidents.values("status", "impact")))
    return {
        "id": str(page.pk),
        "name": page.title,
        "url": page_url(page),
        "status_indicator": overall["indicator"],
        "status_description": overall["description"],
    }, statuses


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def incident_payload(incident: PublicIncident, statuses: dict[int, str]) -> dict[str, Any]:
    """A public incident as Statuspage's webhooks and API show one."""
    page = incident.page
    updates = list(incident.updates.order_by("-created_at", "-id"))
    monitoring = [u.created_at for u in updates if u.status == Status.MONITORING]
    return {
        "id": str(incident.pk),
        "name": incident.title,
        "status": incident.status,
        "impact": incident.impact,
        "created_at": iso(incident.created_at),
        "updated_at": iso(incident.updated_at),
        "started_at": iso(incident.created_at),
        "monitoring_at": iso(min(monitoring)) if monitoring else None,
        "resolved_at": iso(incident.resolved_at),
        "shortlink": incident_url(page, incident.pk),
        "page_id": str(page.pk),
        "components": [
            {"id": str(c.pk), "name": c.name, "status": statuses.get(c.pk, "operational")}
            for c in incident.components.all()
        ],
        "incident_updates": [update_dict(u) for u in updates],
    }


def update_dict(update: PublicUpdate) -> dict[str, Any]:
    return {
        "id": str(update.pk),
        "incident_id": str(update.incident_id),
        "status": update.status,
        "body": update.body,
        "created_at": iso(update.created_at),
        "updated_at": iso(update.created_at),
        "display_at": iso(update.created_at),
    }


def update_payload(subscriber: Subscriber, update: PublicUpdate) -> dict[str, Any]:
    """Statuspage's incident webhook: {"meta", "page", "incident": {... incident_updates}}."""
    now = timezone.now()
    page, statuses = page_payload(subscriber.page, now)
    incident = PublicIncident.objects.select_related("page").get(pk=update.incident_id)
    return {
        "meta": meta(subscriber, now) | {"update_id": str(update.pk)},
        "page": page,
        "incident": incident_payload(incident, statuses),
    }


def meta(subscriber: Subscriber, now: datetime) -> dict[str, Any]:
    return {
        "unsubscribe": public_url(subscriber.page, "status-unsubscribe", token=subscriber.token),
        "generated_at": now.isoformat(),
    }


def ping(subscriber: Subscriber) -> None:
    """The signed "subscription confirmed" request a new webhook must answer with 2xx.

    Raises TransportError (the message names the host, never the URL).
    """
    now = timezone.now()
    page, _ = page_payload(subscriber.page, now)
    payload = {
        "meta": meta(subscriber, now) | {"event": "subscription.confirmed"},
        "page": page,
        "subscriber": {"id": str(subscriber.pk), "url": subscriber.url},
    }
    send_webhook(subscriber, "subscription.confirmed", payload)
