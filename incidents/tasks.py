"""Celery tasks of the incidents app: thin wrappers over incidents.services."""

from __future__ import annotations

from celery import shared_task

from incidents import services
from incidents.statuspage import tasks as statuspage_tasks  # noqa: F401  (registers them)


@shared_task(ignore_result=True)
def process_status_changes() -> int:
    """Open, re-open and resolve incidents from new StatusChange rows (fired on commit)."""
    return services.process_status_changes()


@shared_task(ignore_result=True)
def escalate_incident(incident_id: int, token: str) -> bool:
    """Run one incident's due escalation step; stale (token changed) → no-op."""
    return services.escalate(incident_id, token)


@shared_task(ignore_result=True)
def escalate_due() -> int:
    """The escalation tick (beat, every few seconds).

    Also the auditor: it applies status changes whose on-commit task was lost
    and resumes paging for incidents whose suppression ended, so paging keeps
    moving even if a message went missing.
    """
    services.process_status_changes()
    services.review_suppressed()
    due = services.due_escalations()
    for incident_id, token in due:
        escalate_incident.delay(incident_id, token)
    return len(due)
