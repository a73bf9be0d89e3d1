"""System tasks of the incidents app, fired by beat."""

from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True)
def escalate_due() -> None:
    """Advances due escalation steps of open incidents. Filled by the incidents work."""
