"""The design Watchpost rejected, for `bench/fleet.py --design periodic-task`.

One django-celery-beat PeriodicTask per monitor (an IntervalSchedule of the
monitor's interval), each firing this task for its one monitor: how many
uptime tools schedule checks, and what DESIGN.md says stalls beat at 10k-100k
rows. The task probes and stores like a batch of one through the production
services, so the comparison measures the scheduling design and nothing else.
It is not part of Watchpost: only the bench's probe workers import it
(`celery worker --include periodic_probe`, with bench/ on PYTHONPATH).

A beat entry has no slot, so the task assigns its run to the latest slot of
the monitor's grid (the same hash-phased grid the dispatcher uses, on which
each entry's start_time is placed) that began at most EARLY before now: a run
beat sends late counts as late, and one later than an interval misses a slot.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

TASK = "periodic_probe.probe_monitor"
# Beat may send an entry a hair before its time; that run belongs to the slot it was due for.
EARLY = timedelta(seconds=0.5)


@shared_task(name=TASK, ignore_result=True)
def probe_monitor(monitor_id: int, interval: int) -> int:
    from checks import services
    from checks.models import Region, next_slot
    from checks.runner import Run, execute

    region = Region.default()
    plans = services.plan_monitors([monitor_id], region)
    if monitor_id not in plans:
        return 0  # paused or deleted
    slot = next_slot(monitor_id, interval, timezone.now() + EARLY) - timedelta(seconds=interval)
    runs = [Run(plans[monitor_id].spec, slot)]
    execute(runs, settings.PROBE_CONCURRENCY, keep=True)
    services.record_batch(plans, runs, region)
    return 1
