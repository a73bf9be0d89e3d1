"""The dispatcher: every due monitor probed once per slot, on its grid, never twice."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.utils import timezone
from kombu import Exchange, Queue

from checks import scheduling, services
from checks.models import Monitor, Region, next_slot
from checks.runner import Run, execute
from monitorsite.celery import app as celery_app
from tests.targets import HttpTarget

pytestmark = pytest.mark.django_db


def make_monitors(count: int, interval: int = 30, **fields: object) -> list[Monitor]:
    return Monitor.objects.bulk_create(
        [
            Monitor(name=f"m{i}", kind="http", target=f"http://127.0.0.1:9/{i}", interval=interval,
                    **fields)
            for i in range(count)
        ]
    )  # fmt: skip


def test_it_spreads_monitors_over_their_interval_and_keeps_them_on_a_grid() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    firsts = [next_slot(monitor_id, 60, now) for monitor_id in range(1, 1001)]
    assert all(now < slot <= now + timedelta(seconds=60) for slot in firsts)
    # A thousand monitors created at once land in (nearly) every second of the minute.
    assert len({slot.second for slot in firsts}) >= 55
    slot = firsts[0]
    following = next_slot(1, 60, slot)
    assert following - slot == timedelta(seconds=60)
    assert next_slot(1, 60, slot + timedelta(hours=5, seconds=1)) == slot + timedelta(
        hours=5, seconds=60
    )


def test_it_claims_what_is_due_and_advances_from_the_scheduled_slot() -> None:
    now = timezone.now()
    due, later = make_monitors(2)
    slot = next_slot(due.pk, 30, now - timedelta(seconds=28))  # due, less than a slot late
    Monitor.objects.filter(pk=due.pk).update(next_check_at=slot)
    Monitor.objects.filter(pk=later.pk).update(next_check_at=now + timedelta(seconds=20))
    claimed = scheduling.claim_due(now, limit=100)
    assert [(c.monitor_id, c.slot) for c in claimed] == [(due.pk, slot)]
    due.refresh_from_db()
    # From the slot, not from "now": no drift however late the tick ran.
    assert due.next_check_at == slot + timedelta(seconds=30)
    assert scheduling.claim_due(now, limit=100) == []


def test_it_claims_a_little_ahead_so_probes_start_on_their_slot(settings) -> None:
    settings.DISPATCH_LOOKAHEAD = 2.0
    now = timezone.now()
    (soon,) = make_monitors(1)
    Monitor.objects.filter(pk=soon.pk).update(next_check_at=now + timedelta(seconds=1.5))
    assert [c.monitor_id for c in scheduling.claim_due(now, limit=10)] == [soon.pk]


def test_probes_claimed_ahead_start_on_their_slot_never_before(target: HttpTarget) -> None:
    target.route("/up", body=b"ok")
    monitors = make_monitors(6)
    Monitor.objects.update(target=target.url("/up"))
    plans = services.plan_monitors([m.pk for m in monitors], Region.default())
    now = datetime.now(UTC)
    # Slots a few milliseconds apart, as a batch's are: some share a wake-up.
    runs = [
        Run(plans[m.pk].spec, now + timedelta(milliseconds=40 + 7 * n))
        for n, m in enumerate(monitors)
    ]
    execute(runs, len(runs))
    assert all(run.observation and run.observation.error is None for run in runs)
    assert all(run.started_at and run.started_at >= run.scheduled_at for run in runs)
    assert target.routes["/up"].hits == len(runs)


def test_it_runs_a_long_overdue_monitor_once_and_returns_it_to_its_grid() -> None:
    now = timezone.now()
    (monitor,) = make_monitors(1, interval=60)
    long_ago = next_slot(monitor.pk, 60, now - timedelta(hours=3))
    Monitor.objects.filter(pk=monitor.pk).update(next_check_at=long_ago)
    claimed = scheduling.claim_due(now, limit=10)
    assert len(claimed) == 1
    horizon = now + timedelta(seconds=2)  # DISPATCH_LOOKAHEAD
    assert now <= claimed[0].slot <= horizon  # probed right away, not charged as lag
    monitor.refresh_from_db()
    # Back on its grid, at least half an interval after the catch-up probe.
    assert now + timedelta(seconds=30) < monitor.next_check_at <= now + timedelta(seconds=92)
    assert (monitor.next_check_at - long_ago).total_seconds() % 60 == pytest.approx(0, abs=1e-3)
    assert scheduling.claim_due(now, limit=10) == []  # no burst of missed slots


def test_it_skips_paused_and_heartbeat_monitors() -> None:
    now = timezone.now()
    (paused,) = make_monitors(1, paused=True)
    beat = Monitor.objects.create(name="cron job", kind="heartbeat", interval=60)
    Monitor.objects.update(next_check_at=now - timedelta(seconds=1))
    assert scheduling.claim_due(now, limit=10) == []
    assert {paused.pk, beat.pk} == set(Monitor.objects.values_list("id", flat=True))


def test_it_gives_new_monitors_their_first_slot_within_one_interval() -> None:
    now = timezone.now()
    monitors = make_monitors(50, interval=30)
    scheduling.assign_first_slots(now)
    slots = Monitor.objects.values_list("next_check_at", flat=True)
    assert all(now < slot <= now + timedelta(seconds=30) for slot in slots)
    assert len({slot.replace(microsecond=0) for slot in slots}) > 20
    assert len(monitors) == 50


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_never_claim_the_same_slot() -> None:
    now = timezone.now()
    make_monitors(600)
    Monitor.objects.update(next_check_at=now - timedelta(seconds=1))
    claims: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def dispatcher(index: int) -> None:
        start.wait()
        try:
            while batch := scheduling.claim_due(now, limit=40):
                claims[index].extend(c.monitor_id for c in batch)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=dispatcher, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = claims[0] + claims[1]
    assert len(everything) == 600
    assert len(set(everything)) == 600
    assert claims[0] and claims[1]  # both really worked


def drain(queue_name: str) -> list[tuple[list[object], dict[str, object]]]:
    messages = []
    with celery_app.connection_for_read() as conn:
        queue = Queue(queue_name, Exchange(queue_name), routing_key=queue_name).bind(
            conn.default_channel
        )
        queue.declare()
        while (message := queue.get(no_ack=True)) is not None:
            args, _kwargs, _embed = message.decode()
            messages.append((args, message.headers))
    return messages


def test_it_enqueues_batches_per_region_with_each_slot_and_an_expiry(settings) -> None:
    settings.PROBE_BATCH_SIZE = 3
    drain("probes")
    drain("probes.eu")
    now = timezone.now()
    monitors = make_monitors(5, interval=30)
    eu = Region.objects.create(name="eu", queue="probes.eu")
    monitors[0].regions.add(eu, Region.default())
    Monitor.objects.update(next_check_at=now - timedelta(seconds=1))
    assert scheduling.dispatch(now) == 6  # five in the default region, one more in eu
    default_batches, eu_batches = drain("probes"), drain("probes.eu")
    assert [len(args[1]) for args, _ in default_batches] == [3, 2]
    assert eu_batches[0][0][0] == "eu"
    assert eu_batches[0][0][1] == [[monitors[0].pk, (now - timedelta(seconds=1)).isoformat()]]
    expires = datetime.fromisoformat(eu_batches[0][1]["expires"])
    assert timedelta(seconds=25) < expires - timezone.now() <= timedelta(seconds=30)


def test_a_shorter_interval_takes_effect_within_the_new_interval() -> None:
    now = timezone.now()
    (monitor,) = make_monitors(1, interval=3600)
    Monitor.objects.filter(pk=monitor.pk).update(next_check_at=now + timedelta(minutes=50))
    monitor = Monitor.objects.get(pk=monitor.pk)
    monitor.interval = 60
    monitor.save(update_fields=["interval"])
    scheduling.assign_first_slots(now)
    monitor.refresh_from_db()
    assert now < monitor.next_check_at <= now + timedelta(seconds=60)
    monitor.name = "renamed"
    monitor.save()  # other edits keep the schedule
    assert Monitor.objects.get(pk=monitor.pk).next_check_at == monitor.next_check_at
