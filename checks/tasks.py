"""Celery tasks of the checks app: thin wrappers over scheduling and services."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.conf import settings

from checks import heartbeats, retention, rollups, scheduling, services
from checks.models import Region
from checks.runner import Run, execute
from monitorsite.models import Heartbeat
from monitorsite.tasks import idempotent_task

logger = logging.getLogger(__name__)

SYSTEM_TICK = "system-tick"


@shared_task(ignore_result=True)
def dispatch_due() -> int:
    """The one-second system tick: enqueue due probes, and prove beat is alive."""
    Heartbeat.objects.record(Heartbeat.Kind.BEAT, SYSTEM_TICK)
    return scheduling.dispatch()


@idempotent_task(ignore_result=True)
def probe_batch(region: str, items: list[list[object]]) -> int:
    """Probe a batch of monitors of one region, each at its slot; store what was seen.

    Safe to run twice: results are unique per (monitor, region, slot), and only
    newly stored results move state.
    """
    try:
        where = Region.default() if region == "default" else Region.objects.get(name=region)
    except Region.DoesNotExist:
        logger.error("probe batch for unknown region %r dropped", region)
        return 0
    slots = {int(monitor_id): datetime.fromisoformat(str(slot)) for monitor_id, slot in items}
    plans = services.plan_monitors(list(slots), where)
    runs = [Run(plan.spec, slots[monitor_id]) for monitor_id, plan in plans.items()]
    execute(runs, settings.PROBE_CONCURRENCY, keep=True)
    services.record_batch(plans, runs, where)
    return len(runs)


@shared_task(ignore_result=True)
def sweep_heartbeats() -> dict[str, int]:
    """Turns new heartbeat pings into results and marks overdue heartbeats down.

    Fired by beat every 2 s; safe to overlap with itself (pings are claimed,
    missed deadlines are stored once per deadline).
    """
    report = heartbeats.sweep()
    return {"pings": report.pings, "missed": report.missed}


@shared_task(ignore_result=True)
def rollup_results() -> int:
    """Folds raw probe results into hourly and daily rollups, and drops expired rollups."""
    return rollups.roll_up() + rollups.purge_old_rollups()


@shared_task(ignore_result=True)
def purge_old_results() -> int:
    """Deletes raw results past their retention (RESULT_RETENTION_DAYS)."""
    return retention.purge_old_results()
