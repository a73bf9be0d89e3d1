"""Sweep heartbeats every 2 s instead of 10, so a recovering job shows up within seconds.

Written out rather than calling ensure_system_schedule: a migration must do
the same thing whenever it runs, whatever the schedule module says later.
An interval an operator changed in the admin is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import migrations
from django.utils import timezone

NAME = "watchpost: sweep heartbeat monitors"


def move(old: int, new: int) -> Callable[[Any, Any], None]:
    def apply(apps: Any, schema_editor: Any) -> None:
        interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
        task_model = apps.get_model("django_celery_beat", "PeriodicTask")
        interval, _ = interval_model.objects.get_or_create(every=new, period="seconds")
        moved = task_model.objects.filter(
            name=NAME, interval__every=old, interval__period="seconds"
        ).update(
            interval=interval,
            # A tick that waited longer than its own period (at least 5 s) is stale.
            expire_seconds=max(new, 5),
        )
        if moved:
            # Historical models send no signals: tell a running beat to reload.
            apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
                ident=1, defaults={"last_update": timezone.now()}
            )

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("monitorsite", "0002_system_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(move(10, 2), move(2, 10))]
