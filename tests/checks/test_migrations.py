"""Migrations that change existing rows keep what users had."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(target: tuple[str, str]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()
    return executor


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_duplicate_fleet_monitors_are_kept_aside_with_their_history() -> None:
    before = ("checks", "0006_lean_result_indexes")
    latest = ("checks", "0007_internal_monitor_once")
    try:
        old = migrate(before).loader.project_state([before]).apps
        Monitor = old.get_model("checks", "Monitor")
        StatusChange = old.get_model("checks", "StatusChange")
        first = Monitor.objects.create(name="Watchpost fleet", kind="internal", interval=60)
        second = Monitor.objects.create(name="Watchpost fleet", kind="internal", interval=60)
        StatusChange.objects.create(monitor=second, from_status="up", to_status="down")

        new = migrate(latest).loader.project_state([latest]).apps
        Monitor = new.get_model("checks", "Monitor")
        StatusChange = new.get_model("checks", "StatusChange")
        kept = Monitor.objects.get(pk=first.pk)
        aside = Monitor.objects.get(pk=second.pk)
        assert (kept.name, kept.paused) == ("Watchpost fleet", False)
        assert (aside.name, aside.paused) == (f"Watchpost fleet (duplicate {second.pk})", True)
        assert StatusChange.objects.filter(monitor=aside).count() == 1
    finally:
        migrate(("checks", MigrationExecutor(connection).loader.graph.leaf_nodes("checks")[0][1]))
