"""One internal monitor per name: workers starting together could each create the fleet's.

Duplicates made before are kept with their history, renamed and paused, so
no status change or incident that points at them is lost.
"""

from django.db import migrations, models


def set_duplicates_aside(apps, schema_editor):
    Monitor = apps.get_model("checks", "Monitor")
    internal = Monitor.objects.filter(kind="internal").order_by("name", "id")
    first_of = {}
    for monitor in internal:
        if monitor.name not in first_of:
            first_of[monitor.name] = monitor.pk
            continue
        monitor.name = f"{monitor.name} (duplicate {monitor.pk})"[:200]
        monitor.paused = True
        monitor.save(update_fields=["name", "paused"])


class Migration(migrations.Migration):
    dependencies = [
        ("checks", "0006_lean_result_indexes"),
    ]

    operations = [
        migrations.RunPython(set_duplicates_aside, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="monitor",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "internal")),
                fields=("name",),
                name="monitor_internal_once",
            ),
        ),
    ]
