from __future__ import annotations

from typing import Any

from django.db import migrations

from monitorsite.schedule import SYSTEM_SCHEDULE, ensure_system_schedule


def create_schedule(apps: Any, schema_editor: Any) -> None:
    ensure_system_schedule(
        apps.get_model("django_celery_beat", "IntervalSchedule"),
        apps.get_model("django_celery_beat", "PeriodicTask"),
    )


def remove_schedule(apps: Any, schema_editor: Any) -> None:
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    task_model.objects.filter(name__in=[entry.name for entry in SYSTEM_SCHEDULE]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitorsite", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
