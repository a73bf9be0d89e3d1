"""The system schedule: the few periodic tasks beat fires.

Monitors are never one periodic task each (that stalls beat at tens of
thousands of rows); the one-second dispatcher tick claims due monitors instead.
Entries live in django-celery-beat's tables, so they are visible and editable
in the admin; `ensure_system_schedule` (run by a migration) creates them.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class SystemEntry(NamedTuple):
    name: str
    task: str
    every_seconds: int
    description: str


SYSTEM_SCHEDULE = (
    SystemEntry(
        "watchpost: dispatch due monitors",
        "checks.tasks.dispatch_due",
        1,
        "The system tick: claims monitors due in the next tick and enqueues their probes.",
    ),
    SystemEntry(
        "watchpost: sweep heartbeat monitors",
        "checks.tasks.sweep_heartbeats",
        2,
        "Turns heartbeat pings into results (a recovering job shows up within seconds) and "
        "marks push monitors down when their ping is overdue past the grace period.",
    ),
    SystemEntry(
        "watchpost: escalate incidents",
        "incidents.tasks.escalate_due",
        5,
        "Advances escalation steps of unacknowledged incidents, applies status changes "
        "whose task was lost, and resumes paging when a suppression ends.",
    ),
    SystemEntry(
        "watchpost: deliver waiting notifications",
        "alerts.tasks.sweep_notifications",
        5,
        "Sends notifications whose time has come (a personal rule's delay, a retry's backoff, "
        "a rate limit) and any whose delivery task was lost.",
    ),
    SystemEntry(
        "watchpost: roll up results",
        "checks.tasks.rollup_results",
        300,
        "Folds raw probe results into hourly and daily rollups.",
    ),
    SystemEntry(
        "watchpost: purge old results",
        "checks.tasks.purge_old_results",
        3600,
        "Deletes raw results and rollups older than their retention.",
    ),
)


def ensure_system_schedule(interval_model: Any, task_model: Any) -> None:
    """Create or repair the system entries; takes models so migrations can pass historical ones."""
    for entry in SYSTEM_SCHEDULE:
        interval, _ = interval_model.objects.get_or_create(
            every=entry.every_seconds, period="seconds"
        )
        task_model.objects.update_or_create(
            name=entry.name,
            defaults={
                "task": entry.task,
                "interval": interval,
                "enabled": True,
                "description": entry.description,
                # A tick that waited longer than its own period is stale: drop it
                # rather than run a burst of them after an outage.
                "expire_seconds": max(entry.every_seconds, 5),
            },
        )
