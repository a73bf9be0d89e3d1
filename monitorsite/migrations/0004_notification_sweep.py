"""Add the notification sweep to the system schedule.

Written out rather than calling ensure_system_schedule: a migration must do
the same thing whenever it runs, whatever the schedule module says later.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.utils import timezone

NAME = "watchpost: deliver waiting notifications"


def add(apps: Any, schema_editor: Any) -> None:
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = interval_model.objects.get_or_create(every=5, period="seconds")
    task_model.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "alerts.tasks.sweep_notifications",
            "interval": interval,
            "enabled": True,
            "description": "Sends notifications whose time has come (a personal rule's delay, "
            "a retry's backoff, a rate limit) and any whose delivery task was lost.",
            "expire_seconds": 5,
        },
    )
    # Historical models send no signals: tell a running beat to reload.
    apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
        ident=1, defaults={"last_update": timezone.now()}
    )


def remove(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("monitorsite", "0003_sweep_heartbeats_every_2s")]

    operations = [migrations.RunPython(add, remove)]
