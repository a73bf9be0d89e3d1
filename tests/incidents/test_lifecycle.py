"""Status changes open, re-open and resolve incidents: once each, in order, by any worker."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from checks.models import Monitor, StatusChange
from incidents import services
from incidents.models import Incident
from tests.incidents.paging import fail, flip, monitor, the_incident, tick, timeline


@pytest.mark.django_db
def test_it_opens_one_incident_when_a_monitor_goes_down_and_resolves_it_on_recovery() -> None:
    api = monitor("api")
    fail(api, "HTTP status is 500, expected one of 200-299")
    tick()
    incident = the_incident(api)
    assert incident.status == "triggered"
    assert incident.title == "api is down"
    assert incident.reason == "HTTP status is 500, expected one of 200-299"
    assert incident.severity == "high"  # the monitor's severity
    assert StatusChange.objects.unprocessed().count() == 0

    flip(api, "up", "HTTP 200 in 12 ms")
    tick()
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert incident.resolved_by == "Watchpost"
    assert [line.split(":")[0] for line in timeline(incident)] == ["opened", "notified", "resolved"]
    assert "api recovered" in timeline(incident)[-1]


@pytest.mark.django_db
def test_it_keeps_one_open_incident_per_monitor() -> None:
    api = monitor("api")
    fail(api)
    tick()
    flip(api, "degraded", "latency p95 is 900 ms (warning ≥ 500 ms)")
    fail(api, "connection refused")
    tick()
    assert Incident.objects.filter(monitor=api).count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(monitor=api, title="another", opened_at=timezone.now())


@pytest.mark.django_db
def test_a_warning_opens_a_low_incident_that_an_outage_raises() -> None:
    api = monitor("api", severity="critical")
    flip(api, "degraded", "latency p95 is 900 ms (warning ≥ 500 ms)")
    tick()
    incident = the_incident(api)
    assert (incident.severity, incident.title) == ("low", "api is degraded")
    fail(api, "HTTP status is 503, expected one of 200-299")
    tick()
    incident.refresh_from_db()
    assert (incident.severity, incident.title) == ("critical", "api is down")
    assert incident.reason == "HTTP status is 503, expected one of 200-299"


@pytest.mark.django_db
def test_failing_again_within_the_reopen_window_reopens_the_same_incident(settings) -> None:
    settings.INCIDENT_REOPEN_WINDOW = 300
    api = monitor("api")
    fail(api)
    tick()
    flip(api, "up")
    tick()
    first = the_incident(api)
    with time_machine.travel(timezone.now() + timedelta(seconds=120), tick=False):
        fail(api, "timed out after 10 s")
        tick()
    assert Incident.objects.filter(monitor=api).count() == 1
    first.refresh_from_db()
    assert first.status == "triggered" and first.resolved_at is None
    assert any(line.startswith("reopened") for line in timeline(first))

    flip(api, "up")
    tick()
    with time_machine.travel(timezone.now() + timedelta(seconds=900), tick=False):
        fail(api)
        tick()
    assert Incident.objects.filter(monitor=api).count() == 2  # past the window: a new one


@pytest.mark.django_db
def test_pausing_a_monitor_resolves_its_incident() -> None:
    api = monitor("api")
    fail(api)
    tick()
    flip(api, "paused", "paused")
    tick()
    incident = the_incident(api)
    assert incident.status == "resolved"
    assert "api was paused" in incident.resolution_note


@pytest.mark.django_db
def test_one_broken_change_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    broken, fine = monitor("broken"), monitor("fine")
    fail(broken)
    fail(fine)
    real = services.apply_change

    def explode(change: StatusChange) -> None:
        if change.monitor_id == broken.pk:
            raise RuntimeError("boom")
        real(change)

    monkeypatch.setattr(services, "apply_change", explode)
    services.process_status_changes()
    assert the_incident(fine).status == "triggered"
    assert not Incident.objects.filter(monitor=broken).exists()
    # The broken monitor's change stays unprocessed, for the next sweep to retry.
    assert StatusChange.objects.unprocessed().filter(monitor=broken).count() == 1


@pytest.mark.django_db(transaction=True)
def test_workers_processing_at_once_apply_each_change_once_and_in_order() -> None:
    api = monitor("api")
    fail(api)
    flip(api, "up")
    fail(api, "again")
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            services.process_status_changes()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    incidents = list(Incident.objects.filter(monitor=api))
    # down → up → down within the re-open window: one incident, open again.
    assert len(incidents) == 1
    assert incidents[0].status == "triggered"
    kinds = [e.kind for e in incidents[0].events.order_by("at", "id")]
    assert (
        kinds.count("opened") == 1 and kinds.count("resolved") == 1 and kinds.count("reopened") == 1
    )
    assert StatusChange.objects.unprocessed().count() == 0
    assert Monitor.objects.get(pk=api.pk).status == "down"


@pytest.mark.django_db
def test_a_thousand_new_monitors_coming_up_are_settled_at_once(
    django_assert_max_num_queries: Any,
) -> None:
    fleet = Monitor.objects.bulk_create(
        Monitor(name=f"m{n}", kind="http", target=f"https://m{n}.example.test/")
        for n in range(1000)
    )
    StatusChange.objects.bulk_create(
        StatusChange(monitor=m, from_status="unknown", to_status="up", created_at=timezone.now())
        for m in fleet
    )
    with django_assert_max_num_queries(3):
        assert services.process_status_changes() == 1000
    assert StatusChange.objects.unprocessed().count() == 0
    assert not Incident.objects.exists()


@pytest.mark.django_db
def test_a_recovery_still_resolves_the_outage_before_it() -> None:
    api, web = monitor("api"), monitor("web")
    fail(api)
    flip(api, "up")  # both waiting: the recovery must follow the outage, not skip it
    fail(web)
    tick()
    flip(web, "up")  # the outage was applied: the recovery has an incident to resolve
    tick()
    for mon in (api, web):
        incident = the_incident(mon)
        assert incident.status == "resolved"
        assert f"{mon.name} recovered" in incident.resolution_note
    assert StatusChange.objects.unprocessed().count() == 0
