"""Folding raw results into hourly and daily rollups, which outlive the raw rows.

Buckets follow TIME_ZONE's own hours and days (so a day on the status page is a
local day, 23 or 25 hours long across a DST change). An hour is aggregated from
raw results; a day is the sum of its hours, its percentiles the hours'
percentiles weighted by their counts (an approximation: exact day percentiles
would need every raw latency of the day, which retention removes).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Aggregate, Count, FloatField, Max, Q
from django.utils import timezone

from checks.assertions import percentile
from checks.models import Outcome, ProbeResult, Rollup

RECOMPUTED_HOURS = 3  # the current hour and two before it: covers a missed run or two
FIELDS = ["total", "ok", "warning", "failing", "latency_p50", "latency_p95", "latency_max"]


class Percentile(Aggregate):
    """PostgreSQL's percentile_cont over a column."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


# Bucket starts are returned in UTC: arithmetic on aware local datetimes is
# wall-clock arithmetic, which is wrong across a DST change.


def hour_start(moment: datetime) -> datetime:
    local = timezone.localtime(moment)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def day_start(moment: datetime) -> datetime:
    local = timezone.localtime(moment)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    return timezone.make_aware(midnight).astimezone(UTC)


def next_day(start: datetime) -> datetime:
    return day_start(start + timedelta(hours=36))


def hour_rows(start: datetime, end: datetime) -> dict[int, dict[str, Any]]:
    """Aggregates per monitor of the results whose slot is in [start, end)."""
    results = ProbeResult.objects.filter(scheduled_at__gte=start, scheduled_at__lt=end)
    failing = Q(outcome__in=[Outcome.CRITICAL, Outcome.ERROR])
    aggregates: dict[str, Any] = {
        "total": Count("id"),
        "ok": Count("id", filter=Q(outcome=Outcome.OK)),
        "warning": Count("id", filter=Q(outcome=Outcome.WARNING)),
        "failing": Count("id", filter=failing),
        "latency_max": Max("duration_ms"),
    }
    if connection.vendor == "postgresql":
        aggregates["latency_p50"] = Percentile("duration_ms", fraction=0.5)
        aggregates["latency_p95"] = Percentile("duration_ms", fraction=0.95)
    rows = {
        row.pop("monitor_id"): row
        for row in results.values("monitor_id").annotate(**aggregates).order_by()
    }
    if connection.vendor != "postgresql":
        # The embedded SQLite has no percentile function; its scale is small.
        latencies: dict[int, list[float]] = defaultdict(list)
        for monitor_id, ms in results.exclude(duration_ms=None).values_list(
            "monitor_id", "duration_ms"
        ):
            latencies[monitor_id].append(ms)
        for monitor_id, row in rows.items():
            ordered = sorted(latencies.get(monitor_id, []))
            row["latency_p50"] = percentile(ordered, 50) if ordered else None
            row["latency_p95"] = percentile(ordered, 95) if ordered else None
    return rows


def save(period: str, bucket: datetime, rows: dict[int, dict[str, Any]]) -> int:
    Rollup.objects.bulk_create(
        [
            Rollup(monitor_id=mid, period=period, bucket_start=bucket, **row)
            for mid, row in rows.items()
        ],
        update_conflicts=True,
        unique_fields=["monitor", "period", "bucket_start"],
        update_fields=FIELDS,
        batch_size=2000,
    )
    return len(rows)


def day_rows(start: datetime) -> dict[int, dict[str, Any]]:
    hours = Rollup.objects.filter(
        period=Rollup.Period.HOUR, bucket_start__gte=start, bucket_start__lt=next_day(start)
    ).values_list("monitor_id", *FIELDS)
    rows: dict[int, dict[str, Any]] = {}
    weights: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for monitor_id, total, ok, warning, failing, p50, p95, worst in hours:
        row = rows.setdefault(
            monitor_id, {"total": 0, "ok": 0, "warning": 0, "failing": 0, "latency_max": None}
        )
        row["total"] += total
        row["ok"] += ok
        row["warning"] += warning
        row["failing"] += failing
        if worst is not None:
            row["latency_max"] = max(worst, row["latency_max"] or worst)
        if p50 is not None:
            weight = weights[monitor_id]
            weight["n"] += total
            weight["p50"] += p50 * total
            weight["p95"] += p95 * total
    for monitor_id, row in rows.items():
        weight = weights.get(monitor_id)
        row["latency_p50"] = weight["p50"] / weight["n"] if weight and weight["n"] else None
        row["latency_p95"] = weight["p95"] / weight["n"] if weight and weight["n"] else None
    return rows


def roll_up(now: datetime | None = None, hours: int = RECOMPUTED_HOURS) -> int:
    """Recompute the last `hours` hourly rollups and the days they fall in."""
    now = now or timezone.now()
    current = hour_start(now)
    buckets = [hour_start(current - timedelta(hours=n)) for n in range(hours)]
    written = 0
    for bucket in buckets:
        written += save(Rollup.Period.HOUR, bucket, hour_rows(bucket, bucket + timedelta(hours=1)))
    for day in sorted({day_start(bucket) for bucket in buckets}):
        written += save(Rollup.Period.DAY, day, day_rows(day))
    return written


def purge_old_rollups(now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - timedelta(days=settings.ROLLUP_RETENTION_DAYS)
    deleted, _ = Rollup.objects.filter(bucket_start__lt=cutoff).delete()
    return deleted
