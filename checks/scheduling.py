"""The dispatcher: claim monitors that are due and hand their probes to workers.

Beat fires one tick a second. Each tick claims the monitors whose slot falls
before now + lookahead with `SELECT … FOR UPDATE SKIP LOCKED` (two dispatchers
never claim the same row; on SQLite, IMMEDIATE transactions let one dispatcher
in at a time), moves each `next_check_at` to the next slot on the monitor's
own grid, and enqueues batches that carry each slot, so a probe starts on its
slot rather than on the tick.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from checks.bulk import bound_cursor, in_ids, update_rows
from checks.models import Monitor, Region, next_slot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    monitor_id: int
    kind: str
    interval: int
    slot: datetime


def assign_first_slots(now: datetime) -> int:
    """Give new monitors their first slot, spread over the interval by their id."""
    new = list(
        Monitor.objects.scheduled().filter(next_check_at__isnull=True).values_list("id", "interval")
    )
    for monitor_id, interval in new:
        Monitor.objects.filter(pk=monitor_id, next_check_at__isnull=True).update(
            next_check_at=next_slot(monitor_id, interval, now)
        )
    return len(new)


def claim_due(now: datetime, limit: int) -> list[Claimed]:
    horizon = now + timedelta(seconds=settings.DISPATCH_LOOKAHEAD)
    claimed = []
    with transaction.atomic():
        rows = list(
            Monitor.objects.due(horizon)
            .select_for_update(skip_locked=True)
            .order_by("next_check_at")
            .values_list("id", "kind", "interval", "next_check_at")[:limit]
        )
        updates = []
        for monitor_id, kind, interval, slot in rows:
            if slot + timedelta(seconds=interval) <= horizon:
                # Missed slots (Watchpost was down, or ticks ran late): probe
                # once, now or at the grid's next slot if that is within the
                # lookahead, then carry on from the grid; no burst of catch-up
                # probes, and no lag charged for time Watchpost was away.
                slot = max(
                    next_slot(monitor_id, interval, horizon - timedelta(seconds=interval)), now
                )
            # At least half an interval on: a slot that is off the grid (the
            # interval was edited) never gets a second probe moments later.
            following = next_slot(monitor_id, interval, slot + timedelta(seconds=interval / 2))
            claimed.append(Claimed(monitor_id, kind, interval, slot))
            updates.append((monitor_id, following))
        update_rows(Monitor, ["next_check_at"], updates)
    return claimed


def batches(claimed: list[Claimed], size: int) -> dict[tuple[str, str], list[list[Claimed]]]:
    """Group claims by (region queue, kind), in batches of at most `size`, slots in order."""
    default = Region.default().name
    regions_of: dict[int, list[str]] = defaultdict(list)
    for monitor_id, region in configured_regions([c.monitor_id for c in claimed]):
        regions_of[monitor_id].append(region)
    groups: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
    for claim in claimed:
        for region in regions_of.get(claim.monitor_id) or [default]:
            groups[(region, claim.kind)].append(claim)
    return {
        key: [items[i : i + size] for i in range(0, len(items), size)]
        for key, items in groups.items()
    }


def configured_regions(monitor_ids: list[int]) -> list[tuple[int, str]]:
    """(monitor id, region name) for the monitors that name their regions."""
    if not monitor_ids:
        return []
    through = Monitor.regions.through._meta
    where, params = in_ids(f"mr.{through.get_field('monitor').column}", monitor_ids)
    sql = (
        f"SELECT mr.{through.get_field('monitor').column}, r.name "  # noqa: S608
        f"FROM {through.db_table} mr JOIN {Region._meta.db_table} r "
        f"ON r.id = mr.{through.get_field('region').column} WHERE {where}"
    )
    with bound_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def dispatch(now: datetime | None = None) -> int:
    """One dispatcher tick; returns how many probe runs were enqueued."""
    from checks.tasks import probe_batch

    now = now or timezone.now()
    assign_first_slots(now)
    claimed = claim_due(now, settings.DISPATCH_MAX_PER_TICK)
    if not claimed:
        return 0
    queues = dict(Region.objects.values_list("name", "queue"))
    sent = 0
    failed: list[Claimed] = []
    for (region, _kind), chunks in batches(claimed, settings.PROBE_BATCH_SIZE).items():
        for chunk in chunks:
            items = [[c.monitor_id, c.slot.isoformat()] for c in chunk]
            try:
                probe_batch.apply_async(
                    args=[region, items],
                    queue=queues.get(region, "probes"),
                    # A batch that waited past its monitors' interval is stale:
                    # the next slot is already on its way.
                    expires=min(c.interval for c in chunk),
                )
            except Exception:
                logger.exception("could not enqueue a probe batch for region %s", region)
                failed.extend(chunk)
            else:
                sent += len(chunk)
    if failed:
        # Put the slots back, so the next tick tries again.
        update_rows(Monitor, ["next_check_at"], [(c.monitor_id, c.slot) for c in failed])
    return sent
