"""Celery tasks of the alerts app: thin wrappers over alerts.delivery."""

from __future__ import annotations

from celery import shared_task

from alerts import delivery
from monitorsite.tasks import idempotent_task


# Safe to run twice: the claim in delivery.deliver lets one run send. The hard
# limit stops a send before its lease runs out, so a row is never sent by a
# live worker and, at the same time, handed on by the sweep.
@idempotent_task(
    ignore_result=True,
    soft_time_limit=delivery.lease_seconds() - 20,
    time_limit=delivery.lease_seconds() - 10,
)
def deliver_notification(notification_id: int) -> str:
    """Send one notification row (routed to the "notify" queue); returns its status."""
    return delivery.deliver(notification_id)


@shared_task(ignore_result=True)
def sweep_notifications() -> int:
    """Enqueues notifications whose time has come, and recovers sends lost with a worker.

    Fired by beat; the rows are the record, so a missed run only delays.
    """
    return delivery.sweep()
