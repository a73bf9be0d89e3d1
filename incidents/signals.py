"""Listeners: the incidents app reacts to checks and alerts without them importing it."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver
from django.utils import timezone

from alerts.models import Notification
from alerts.signals import notification_finished
from checks.signals import status_changes_recorded
from incidents.models import IncidentEvent

logger = logging.getLogger(__name__)


@receiver(status_changes_recorded)
def enqueue_processing(**_: Any) -> None:
    from incidents.tasks import process_status_changes

    try:
        process_status_changes.delay()
    except Exception:  # the escalation tick picks the rows up; the probe result stands
        logger.exception("could not enqueue status change processing")


@receiver(notification_finished)
def record_delivery(notification: Notification, **_: Any) -> None:
    """Write the outcome of a page into its incident's timeline."""
    if notification.incident_id is None:
        return
    event, dest = notification.get_event_display(), notification.destination
    what = f"{event} via {notification.transport} to {dest}"
    if notification.status == Notification.Status.SENT:
        kind, text = IncidentEvent.Kind.NOTIFIED, f"delivered: {what}"
    else:
        kind = IncidentEvent.Kind.DELIVERY_FAILED
        tries = notification.attempts
        text = f"delivery failed after {tries} attempt(s): {what}: {notification.last_error}"
    IncidentEvent.objects.create(
        incident_id=notification.incident_id,
        kind=kind,
        message=text,
        at=notification.sent_at or timezone.now(),
        data={"notification": notification.pk},
    )
