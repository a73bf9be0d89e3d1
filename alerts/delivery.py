"""Sending notification rows: claimed once, rate limited per channel, retried, logged.

Rows are written first (incidents.escalation, send_test); this module sends
them. Each run of `deliver` claims its row with one conditional UPDATE, so
the same task run twice, two workers, or the sweep and the original enqueue
racing each other send one message. Every try is a DeliveryAttempt row; the
final outcome (sent or failed) is announced with `notification_finished`
once it is committed.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from alerts.models import Channel, Contact, DeliveryAttempt, Notification
from alerts.signals import notification_finished
from alerts.transports import get_transport
from alerts.transports.base import Destination, Message, TransportError, shorten
from monitorsite import metrics

logger = logging.getLogger(__name__)

Status = Notification.Status
RATE_WINDOW = timedelta(seconds=60)
# Rows due later than this are left to the sweep rather than held by a worker
# as a countdown (a long countdown sits in worker memory and outlives deploys).
SCHEDULE_HORIZON = 300.0
MAX_BACKOFF = 3600.0
SWEEP_BATCH = 1000
ERROR_SHOWN = 1000
LOST_WORKER = "the worker stopped while sending (no outcome within the lease)"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str = ""
    permanent: bool = False


def lease_seconds() -> float:
    """How long a claimed row may stay 'sending' before its worker is presumed dead."""
    return 3 * float(settings.NOTIFY_TIMEOUT) + 60


def log_extra(row: Notification) -> dict[str, Any]:
    return {"incident_id": row.incident_id} if row.incident_id else {}


# --- Sending one row ----------------------------------------------------------------------------


def deliver(notification_id: int) -> str:
    """Send the notification if it is due and nobody else is sending it; return its status."""
    rows = Notification.objects.select_related("channel", "contact")
    row = rows.filter(pk=notification_id).first()
    if row is None:
        return "missing"
    skipped = claim(row, timezone.now())
    if skipped is not None:
        return skipped
    started = timezone.now()
    clock = time.perf_counter()
    outcome = attempt(row)
    return record(row, outcome, started, (time.perf_counter() - clock) * 1000)


def claim(row: Notification, now: datetime) -> str | None:
    """Take the row for sending (None), or say why not (the status it stays in)."""
    waiting = Notification.objects.filter(pk=row.pk).deliverable(now)
    with transaction.atomic():
        if row.channel_id is not None:
            # Locking the channel makes the rate-limit count and the claim one
            # step: two workers cannot both take the channel's last free slot.
            row.channel = Channel.objects.select_for_update().get(pk=row.channel_id)
            if not row.channel.enabled:
                waiting.update(status=Status.CANCELLED, last_error="the channel is disabled")
                return current_status(row.pk)
            free_at = rate_limited(row.channel, now)
            if free_at is not None:
                if waiting.update(status=Status.PENDING, not_before=free_at):
                    logger.info(
                        "notification %s to %s waits for the rate limit until %s",
                        row.pk, row.channel.name, free_at.isoformat(), extra=log_extra(row),
                    )  # fmt: skip
                    schedule([row.pk])
                return current_status(row.pk)
        # The claim. not_before becomes the claim time: the lease of a row
        # left 'sending' by a dead worker counts from it (see release_lost).
        claimed = waiting.update(status=Status.SENDING, not_before=now, attempts=F("attempts") + 1)
    if not claimed:
        return current_status(row.pk)
    row.refresh_from_db(fields=["status", "attempts", "not_before", "message", "address"])
    return None


def current_status(pk: int) -> str:
    found = Notification.objects.filter(pk=pk).values_list("status", flat=True).first()
    return found or "missing"


def rate_limited(channel: Channel, now: datetime) -> datetime | None:
    """When the channel may send again if its last minute is full; None if it may now.

    Rows being sent count too: they are about to be sent.
    """
    recent = channel.notifications.filter(
        Q(status=Status.SENT, sent_at__gt=now - RATE_WINDOW) | Q(status=Status.SENDING)
    )
    found = list(recent.values_list("sent_at", flat=True))
    times = sorted(t for t in found if t is not None)
    in_flight = len(found) - len(times)  # sending: no sent_at yet
    over = len(times) + in_flight - channel.rate_limit + 1
    if over <= 0:
        return None
    # The window frees when the `over` oldest sends leave it.
    return times[over - 1] + RATE_WINDOW if over <= len(times) else now + RATE_WINDOW


def destination(row: Notification) -> Destination:
    if row.channel is not None:
        channel = row.channel
        return Destination(kind=channel.kind, config=channel.config, name=channel.name)
    name = row.contact.name if row.contact is not None else row.address
    return Destination(kind=row.transport, address=row.address, name=name)


def attempt(row: Notification) -> Outcome:
    """Run the transport; whatever it raises becomes an Outcome, never the caller's problem."""
    target = destination(row)
    try:
        transport = get_transport(target.kind)
        transport.send(target, Message.from_dict(row.message))
    except TransportError as exc:
        return Outcome(False, exc.message, exc.permanent)
    except LookupError as exc:
        return Outcome(False, str(exc), permanent=True)
    except Exception as exc:
        # A bug in one transport must not stop the worker or other notifications.
        # Its text may carry a URL or token, so only the class is recorded.
        logger.exception(
            "transport %s raised on notification %s", target.kind, row.pk, extra=log_extra(row)
        )
        return Outcome(False, f"unexpected {type(exc).__name__} in the {target.kind} transport")
    return Outcome(True)


# --- Recording the outcome ---------------------------------------------------------------------


def backoff(attempt_number: int) -> timedelta:
    """Exponential backoff with jitter between half and all of base * 2^(attempt-1).

    Full jitter (0 to the ceiling) may retry at once; keeping the lower half
    still spreads a storm's retries while always giving the service a rest.
    """
    ceiling = min(float(settings.DELIVERY_RETRY_BASE) * 2 ** (attempt_number - 1), MAX_BACKOFF)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def next_state(row: Notification, outcome: Outcome, now: datetime) -> dict[str, Any]:
    if outcome.ok:
        return {"status": Status.SENT, "sent_at": now, "last_error": ""}
    error = shorten(outcome.error, ERROR_SHOWN)
    # A test is tried once: its result is reported to whoever asked, now.
    final = (
        outcome.permanent
        or row.attempts >= settings.DELIVERY_MAX_ATTEMPTS
        or row.event == Notification.Event.TEST
    )
    if final:
        return {"status": Status.FAILED, "last_error": error}
    return {"status": Status.RETRY, "last_error": error, "not_before": now + backoff(row.attempts)}


def record(row: Notification, outcome: Outcome, started: datetime, duration_ms: float) -> str:
    now = timezone.now()
    fields = next_state(row, outcome, now)
    with transaction.atomic():
        if row.channel_id is not None:
            # Channel before notification, as in claim(): the same lock order
            # everywhere, so a claim racing this record cannot deadlock with it.
            Channel.objects.select_for_update().filter(pk=row.channel_id).first()
        DeliveryAttempt.objects.create(
            notification=row, number=row.attempts, started_at=started, duration_ms=duration_ms,
            ok=outcome.ok, error=shorten(outcome.error, ERROR_SHOWN),
        )  # fmt: skip
        # Only while still ours: past the lease the sweep may have handed it on.
        if not Notification.objects.filter(pk=row.pk, status=Status.SENDING).update(**fields):
            logger.warning("notification %s was taken over while sending", row.pk)
            return current_status(row.pk)
        update_flag(row, outcome, now)
        for name, value in fields.items():
            setattr(row, name, value)
        if row.status == Status.RETRY:
            schedule([row.pk])
        else:
            announce(row)
    log_outcome(row, outcome)
    if not outcome.ok:
        metrics.inc(metrics.NOTIFICATION_FAILURES, {"channel_kind": row.transport})
    return row.status


def update_flag(row: Notification, outcome: Outcome, now: datetime) -> None:
    """A permanent error flags the channel for an admin; a later success clears the flag."""
    if row.channel_id is None:
        return
    channels = Channel.objects.filter(pk=row.channel_id)
    if outcome.ok:
        channels.exclude(flagged_at=None).update(flagged_at=None, flagged_reason="")
    elif outcome.permanent:
        channels.update(flagged_at=now, flagged_reason=shorten(outcome.error, ERROR_SHOWN))


def announce(row: Notification) -> None:
    transaction.on_commit(
        partial(notification_finished.send, sender=Notification, notification=row), robust=True
    )


def log_outcome(row: Notification, outcome: Outcome) -> None:
    where = f"{row.transport} to {destination(row).name}"
    if outcome.ok:
        logger.info("notification %s sent via %s", row.pk, where, extra=log_extra(row))
        return
    logger.warning(
        "notification %s via %s: attempt %s failed (%s), now %s: %s",
        row.pk, where, row.attempts, "permanent" if outcome.permanent else "temporary",
        row.status, outcome.error, extra=log_extra(row),
    )  # fmt: skip


# --- Scheduling and the sweep -------------------------------------------------------------------


def schedule(ids: Iterable[int]) -> None:
    """Enqueue delivery of these rows once the current transaction commits."""
    ids = list(ids)
    if ids:
        transaction.on_commit(partial(enqueue, ids), robust=True)


def enqueue(ids: list[int]) -> None:
    from alerts.tasks import deliver_notification

    now = timezone.now()
    rows = Notification.objects.filter(pk__in=ids, status__in=[Status.PENDING, Status.RETRY])
    for pk, not_before in rows.values_list("pk", "not_before"):
        wait = (not_before - now).total_seconds()
        if wait > SCHEDULE_HORIZON:
            continue  # the sweep enqueues it when it is due
        deliver_notification.apply_async(args=[pk], countdown=max(wait, 0.0))


def release_lost(now: datetime) -> int:
    """Rows left 'sending' past the lease lost their worker mid-send: send them again.

    We cannot know whether the service got the message. Sending again may
    duplicate a page; not sending may lose it, and a lost page is worse
    (at-least-once). A row out of attempts, or a test, fails instead.
    """
    lost = Notification.objects.filter(
        status=Status.SENDING, not_before__lt=now - timedelta(seconds=lease_seconds())
    )
    out = Q(attempts__gte=settings.DELIVERY_MAX_ATTEMPTS) | Q(event=Notification.Event.TEST)
    released = lost.exclude(out).update(
        status=Status.RETRY, last_error=f"{LOST_WORKER}; sending again"
    )
    with transaction.atomic():
        failed = list(lost.filter(out).select_for_update(skip_locked=True))
        for row in failed:
            row.status, row.last_error = Status.FAILED, LOST_WORKER
            row.save(update_fields=["status", "last_error"])
            announce(row)
    if released or failed:
        logger.warning(
            "%s notifications lost their worker: %s resent", released + len(failed), released
        )
    return released + len(failed)


def due_ids(now: datetime | None = None) -> list[int]:
    """Rows due for delivery, oldest first, after recovering rows lost with a worker."""
    now = now or timezone.now()
    release_lost(now)
    due = Notification.objects.deliverable(now).order_by("not_before", "pk")
    return list(due.values_list("pk", flat=True)[:SWEEP_BATCH])


def sweep() -> int:
    ids = due_ids()
    schedule(ids)
    return len(ids)


# --- Test notifications --------------------------------------------------------------------------


def test_message(name: str) -> Message:
    return Message(
        event=Notification.Event.TEST,
        summary=f"Test notification from Watchpost to {name}",
        site_url=settings.SITE_URL,
    )


def test_rows(channel: Channel | None, contact: Contact | None) -> list[Notification]:
    common = {"event": Notification.Event.TEST}
    if channel is not None:
        message = test_message(channel.name).to_dict()
        return [Notification(channel=channel, transport=channel.kind, message=message, **common)]
    assert contact is not None
    message = test_message(contact.name).to_dict()
    methods = [("email", contact.email), ("twilio", contact.phone)]
    return [
        Notification(contact=contact, transport=kind, address=address, message=message, **common)
        for kind, address in methods
        if address
    ]


def send_test(channel: Channel | None = None, contact: Contact | None = None) -> list[Notification]:
    """Send a test to a channel, or to each method a contact can receive, now; return the rows."""
    if (channel is None) == (contact is None):
        raise ValueError("send_test needs a channel or a contact")
    rows = test_rows(channel, contact)
    for row in rows:
        row.key = f"test:{uuid.uuid4()}"
        row.save()
    for row in rows:
        deliver(row.pk)
        row.refresh_from_db()
    return rows
