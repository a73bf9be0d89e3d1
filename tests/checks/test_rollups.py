"""Hourly and daily rollups: what the status page's uptime bars are built from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from checks import rollups
from checks.models import Monitor, ProbeResult, Region, Rollup
from checks.tasks import rollup_results

pytestmark = pytest.mark.django_db


def results(monitor: Monitor, start: datetime, outcomes: list[tuple[str, float]]) -> None:
    region = Region.default()
    ProbeResult.objects.bulk_create(
        ProbeResult(
            monitor=monitor,
            region=region,
            scheduled_at=start + timedelta(minutes=i),
            started_at=start + timedelta(minutes=i),
            outcome=outcome,
            duration_ms=ms,
        )
        for i, (outcome, ms) in enumerate(outcomes)
    )


@pytest.fixture
def api() -> Monitor:
    return Monitor.objects.create(name="api", kind="http", target="http://127.0.0.1/")


def test_it_counts_outcomes_and_latency_per_hour(api: Monitor) -> None:
    hour = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    outcomes = [("ok", float(ms)) for ms in range(10, 200, 10)]  # 19 ok, 10..190 ms
    results(api, hour, [*outcomes, ("warning", 400.0), ("critical", 900.0), ("error", None)])
    with time_machine.travel(hour + timedelta(minutes=50), tick=False):
        rollup_results()
    row = Rollup.objects.get(monitor=api, period="hour", bucket_start=hour)
    assert (row.total, row.ok, row.warning, row.failing) == (22, 19, 1, 2)
    assert row.latency_max == 900.0
    assert row.latency_p50 == pytest.approx(110.0)
    assert 400.0 <= row.latency_p95 <= 900.0
    assert row.uptime_pct == pytest.approx(100 * 20 / 22)


def test_it_sums_hours_into_a_local_day(api: Monitor, settings) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    # 23:30 UTC on the 21st is 00:30 on the 22nd in Berlin: the same local day as 10:00 UTC.
    results(api, datetime(2026, 11, 21, 23, 30, tzinfo=UTC), [("critical", 50.0)] * 10)
    results(api, datetime(2026, 11, 22, 10, 0, tzinfo=UTC), [("ok", 20.0)] * 30)
    with time_machine.travel(datetime(2026, 11, 22, 10, 59, tzinfo=UTC), tick=False):
        rollups.roll_up(hours=12)
    day = Rollup.objects.get(monitor=api, period="day")
    assert day.bucket_start == datetime(2026, 11, 21, 23, 0, tzinfo=UTC)  # Berlin midnight
    assert (day.total, day.ok, day.failing) == (40, 30, 10)
    assert day.uptime_pct == pytest.approx(75.0)
    assert day.latency_p50 == pytest.approx((50 * 10 + 20 * 30) / 40)


def test_running_again_updates_rather_than_duplicates(api: Monitor) -> None:
    hour = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    results(api, hour, [("ok", 10.0)] * 5)
    with time_machine.travel(hour + timedelta(minutes=20), tick=False):
        rollups.roll_up()
        results(api, hour + timedelta(minutes=30), [("critical", 10.0)] * 5)
        rollups.roll_up()
    row = Rollup.objects.get(monitor=api, period="hour", bucket_start=hour)
    assert (row.total, row.failing) == (10, 5)
    assert Rollup.objects.filter(period="day").count() == 1


def test_it_drops_rollups_past_their_retention(api: Monitor, settings) -> None:
    settings.ROLLUP_RETENTION_DAYS = 400
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    for age in (401, 399):
        Rollup.objects.create(
            monitor=api, period="day", bucket_start=now - timedelta(days=age), total=1, ok=1
        )
    assert rollups.purge_old_rollups(now) == 1
    assert Rollup.objects.get().bucket_start == now - timedelta(days=399)
