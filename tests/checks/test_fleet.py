"""The "Watchpost fleet" monitor: a dead-man's switch on beat and on probe timeliness."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from checks.fleet import FLEET_MONITOR, fleet_monitor, record_fleet_status
from checks.models import Monitor, ProbeResult, Region, StatusChange
from monitorsite.models import Heartbeat

pytestmark = pytest.mark.django_db


def tick(seconds_ago: float) -> None:
    Heartbeat.objects.record(Heartbeat.Kind.BEAT, "system-tick")
    Heartbeat.objects.filter(kind="beat").update(
        seen_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


def fleet() -> Monitor:
    return Monitor.objects.get(name=FLEET_MONITOR)


def test_it_stays_pending_until_the_first_tick() -> None:
    assert record_fleet_status() is None
    assert fleet().status == "pending"


def test_it_goes_down_when_ticks_stop_and_up_when_they_resume() -> None:
    tick(1)
    record_fleet_status()
    assert fleet().status == "up"
    tick(45)
    change = record_fleet_status()
    assert (change.from_status, change.to_status) == ("up", "down")
    assert change.reason.startswith("no system tick for 45 s: beat or the dispatch worker is down")
    assert change.processed_at is None  # the incidents app pages on it
    assert record_fleet_status() is None  # a second worker agrees: no second change
    tick(0)
    assert record_fleet_status().to_status == "up"
    assert StatusChange.objects.filter(monitor=fleet()).count() == 3


def test_it_degrades_when_probes_start_late() -> None:
    tick(0)
    api = Monitor.objects.create(name="api", kind="http", target="http://127.0.0.1/")
    now = timezone.now()
    for n in range(20):
        slot = now - timedelta(seconds=30, milliseconds=n)
        ProbeResult.objects.create(
            monitor=api, region=Region.default(), scheduled_at=slot,
            started_at=slot + timedelta(seconds=8), outcome="ok",
        )  # fmt: skip
    change = record_fleet_status()
    assert change.to_status == "degraded"
    assert change.reason == "probes start late: lag p99 8.0 s over the last minute (limit 5 s)"


def test_nobody_creates_a_monitor_of_watchpost_by_hand() -> None:
    with pytest.raises(ValidationError) as caught:
        Monitor(name="fake", kind="internal").full_clean()
    assert caught.value.message_dict["kind"] == [
        "only Watchpost creates monitors of itself; pick another kind"
    ]


@pytest.mark.django_db(transaction=True)
def test_workers_starting_together_make_one_fleet_monitor_and_keep_judging() -> None:
    # Every worker's heartbeat thread asks for the fleet's monitor as the fleet
    # starts; two of them once made two, and from then on every heartbeat failed.
    workers = 8
    start = threading.Barrier(workers)
    found: list[int] = []
    failed: list[BaseException] = []

    def heartbeat() -> None:
        try:
            start.wait()
            found.append(fleet_monitor().pk)
            record_fleet_status()
        except BaseException as exc:  # reported below
            failed.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=heartbeat) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    assert Monitor.objects.filter(kind="internal").count() == 1
    assert set(found) == {fleet().pk}
