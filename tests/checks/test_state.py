"""From results to state: hysteresis, regions, idempotent batches, status changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from checks.models import Assertion, Monitor, ProbeResult, Region, StatusChange
from checks.tasks import probe_batch
from tests.targets import HttpTarget

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def slot(n: int) -> str:
    return (T0 + timedelta(seconds=30 * n)).isoformat()


def run(monitor: Monitor, n: int, region: str = "default") -> None:
    probe_batch(region, [[monitor.pk, slot(n)]])
    monitor.refresh_from_db()


def flips(monitor: Monitor) -> list[tuple[str, str]]:
    return list(
        StatusChange.objects.filter(monitor=monitor)
        .order_by("created_at", "id")
        .values_list("from_status", "to_status")
    )


@pytest.fixture
def api(target: HttpTarget) -> Monitor:
    target.route("/health", body={"status": "ready"})
    return Monitor.objects.create(
        name="api", kind="http", target=target.url("/health"), interval=30, timeout=5
    )


def test_it_needs_consecutive_failures_to_go_down_and_one_success_to_recover(
    target: HttpTarget, api: Monitor
) -> None:
    run(api, 0)
    assert api.status == "up"
    assert api.last_reason.startswith("HTTP 200 in")
    assert api.last_latency_ms is not None
    target.route("/health", status=500, body={"status": "broken"})
    run(api, 1)
    assert api.status == "up"  # one bad result is not an outage (failure_threshold 2)
    run(api, 2)
    assert api.status == "down"
    assert api.last_reason == "HTTP status is 500, expected one of 200-299"
    change = StatusChange.objects.filter(monitor=api, to_status="down").get()
    assert change.reason == "HTTP status is 500, expected one of 200-299"
    assert change.result.scheduled_at == T0 + timedelta(seconds=60)
    assert change.processed_at is None  # waiting for the incidents app
    target.route("/health", body={"status": "ready"})
    run(api, 3)
    assert api.status == "up"
    assert flips(api) == [("pending", "up"), ("up", "down"), ("down", "up")]


def test_it_turns_degraded_on_warnings(target: HttpTarget, api: Monitor) -> None:
    Assertion.objects.create(
        monitor=api, source="latency", operator="lt", warning_value="1", critical_value="5000"
    )
    target.route("/health", body="ok", delay=0.05)
    for n in range(3):
        run(api, n)
    assert api.status == "degraded"
    assert "latency" in api.last_reason and "≥ 1 ms" in api.last_reason


def test_a_redelivered_batch_writes_nothing_twice(api: Monitor) -> None:
    items = [[api.pk, slot(0)]]
    probe_batch("default", items)
    probe_batch("default", items)
    assert ProbeResult.objects.filter(monitor=api).count() == 1
    assert flips(api) == [("pending", "up")]


def test_a_late_result_of_an_older_slot_does_not_rewrite_the_present(
    target: HttpTarget, api: Monitor
) -> None:
    run(api, 5)
    target.route("/health", status=500)
    run(api, 3)
    run(api, 4)
    assert api.status == "up"
    assert ProbeResult.objects.filter(monitor=api).count() == 3


def test_it_goes_down_only_when_enough_regions_agree(target: HttpTarget, api: Monitor) -> None:
    eu = Region.objects.create(name="eu", queue="probes.eu")
    us = Region.objects.create(name="us", queue="probes.us")
    api.regions.set([eu, us])
    api.confirm_regions = 2
    api.save()
    run(api, 0, "eu")
    run(api, 0, "us")
    assert api.status == "up"
    target.route("/health", status=503)
    run(api, 1, "eu")
    run(api, 2, "eu")
    assert api.status == "degraded"  # one region sees it down: not confirmed
    run(api, 1, "us")
    run(api, 2, "us")
    assert api.status == "down"
    assert set(ProbeResult.objects.filter(monitor=api).values_list("region__name", flat=True)) == {
        "eu",
        "us",
    }


def test_a_paused_monitor_is_not_probed(api: Monitor) -> None:
    api.paused = True
    api.save()
    probe_batch("default", [[api.pk, slot(0)]])
    assert not ProbeResult.objects.filter(monitor=api).exists()


def test_one_broken_monitor_does_not_harm_the_others(target: HttpTarget, api: Monitor) -> None:
    broken = Monitor.objects.create(
        name="broken", kind="http", target="http://127.0.0.1:9/", timeout=2
    )
    # A rule that cannot be evaluated (stored directly, bypassing validation).
    Assertion.objects.create(
        monitor=broken, source="body", operator="matches", critical_value="(unclosed"
    )
    probe_batch("default", [[api.pk, slot(0)], [broken.pk, slot(0)]])
    api.refresh_from_db()
    broken.refresh_from_db()
    assert api.status == "up"
    assert ProbeResult.objects.get(monitor=broken).outcome == "error"


def test_it_judges_p95_latency_over_a_window(target: HttpTarget, api: Monitor) -> None:
    Assertion.objects.create(
        monitor=api, source="latency", operator="lt", critical_value="100",
        aggregate="p95", window=600,
    )  # fmt: skip
    # Nine fast results and one slow: the p95 of ten samples is the slowest.
    now = datetime.now(UTC)
    for n in range(9):
        ProbeResult.objects.create(
            monitor=api,
            region=Region.default(),
            scheduled_at=now - timedelta(seconds=30 * (n + 1)),
            started_at=now,
            duration_ms=20,
            outcome="ok",
        )
    target.route("/health", body="ok", delay=0.15)
    probe_batch("default", [[api.pk, datetime.now(UTC).isoformat()]])
    result = ProbeResult.objects.filter(monitor=api).order_by("-scheduled_at").first()
    assert result.outcome == "critical"
    assert result.reason.startswith("p95 latency ")
    assert result.reason.endswith(" ms ≥ 100 ms over 10 min")
