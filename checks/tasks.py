"""System tasks of the checks app, fired by beat (see monitorsite/migrations/0002)."""

from __future__ import annotations

import logging

from celery import shared_task

from monitorsite.models import Heartbeat

logger = logging.getLogger(__name__)

SYSTEM_TICK = "system-tick"


@shared_task(ignore_result=True)
def dispatch_due() -> None:
    """The one-second system tick: proves beat and the dispatch worker are alive.

    Claiming due monitors and enqueueing probe batches joins this tick when the
    dispatcher lands.
    """
    Heartbeat.objects.record(Heartbeat.Kind.BEAT, SYSTEM_TICK)


@shared_task(ignore_result=True)
def sweep_heartbeats() -> None:
    """Marks push (heartbeat) monitors whose ping is overdue. Filled by the probes work."""


@shared_task(ignore_result=True)
def rollup_results() -> None:
    """Folds raw probe results into hourly and daily rollups. Filled by the probes work."""


@shared_task(ignore_result=True)
def purge_old_results() -> None:
    """Deletes raw results and rollups past their retention. Filled by the probes work."""
