from __future__ import annotations

from typing import Any

from django.db import migrations


def create_default_region(apps: Any, schema_editor: Any) -> None:
    apps.get_model("checks", "Region").objects.get_or_create(
        name="default", defaults={"queue": "probes"}
    )


class Migration(migrations.Migration):
    dependencies = [("checks", "0001_initial")]

    operations = [migrations.RunPython(create_default_region, migrations.RunPython.noop)]
