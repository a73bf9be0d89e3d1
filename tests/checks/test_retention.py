"""Raw results are kept for RESULT_RETENTION_DAYS, then deleted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from checks import retention
from checks.models import Monitor, ProbeResult, Region, StatusChange
from checks.tasks import purge_old_results

pytestmark = pytest.mark.django_db


def test_it_deletes_results_past_retention_and_keeps_the_rest(settings) -> None:
    settings.RESULT_RETENTION_DAYS = 7
    monitor = Monitor.objects.create(name="api", kind="http", target="http://127.0.0.1/")
    now = timezone.now()
    ages = [timedelta(days=8), timedelta(days=7, minutes=1), timedelta(days=6, hours=23)]
    results = [
        ProbeResult.objects.create(
            monitor=monitor, region=Region.default(), scheduled_at=now - age,
            started_at=now - age, outcome="critical",
        )
        for age in ages
    ]  # fmt: skip
    change = StatusChange.objects.create(
        monitor=monitor, from_status="up", to_status="down", result=results[0]
    )
    assert purge_old_results() == 2
    assert list(ProbeResult.objects.values_list("id", flat=True)) == [results[2].pk]
    change.refresh_from_db()
    assert change.result is None  # the flip itself is kept


def test_it_deletes_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "CHUNK", 3)
    monitor = Monitor.objects.create(name="api", kind="http", target="http://127.0.0.1/")
    old = timezone.now() - timedelta(days=30)
    region = Region.default()
    ProbeResult.objects.bulk_create(
        ProbeResult(
            monitor=monitor,
            region=region,
            scheduled_at=old - timedelta(seconds=i),
            started_at=old,
            outcome="ok",
        )
        for i in range(10)
    )
    assert retention.purge_old_results() == 10
    assert not ProbeResult.objects.exists()


def test_it_deletes_old_processed_pings_but_never_unprocessed_ones(settings) -> None:
    from checks.models import Ping

    settings.RESULT_RETENTION_DAYS = 7
    job = Monitor.objects.create(name="nightly", kind="heartbeat", options={"period": 86400})
    old = timezone.now() - timedelta(days=9)
    done = Ping.objects.create(monitor=job, kind="success", received_at=old, processed_at=old)
    waiting = Ping.objects.create(monitor=job, kind="success", received_at=old)
    assert purge_old_results() == 1
    assert list(Ping.objects.values_list("id", flat=True)) == [waiting.pk]
    assert not Ping.objects.filter(pk=done.pk).exists()
