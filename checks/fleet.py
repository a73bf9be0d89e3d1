"""How the probe fleet keeps time: the lag between a slot and its probe's start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from checks.assertions import percentile
from checks.models import Monitor, ProbeResult, StatusChange
from checks.signals import announce_status_changes
from monitorsite.models import Heartbeat

SAMPLE_LIMIT = 20_000


@dataclass(frozen=True)
class Lag:
    samples: int
    p50: float
    p99: float
    worst: float


def recent_lag(window: timedelta, now: datetime | None = None) -> Lag | None:
    """Start lag of the probes whose slot fell in the last `window`; None without any."""
    now = now or timezone.now()
    results = (
        ProbeResult.objects.filter(scheduled_at__gte=now - window, scheduled_at__lte=now)
        # Heartbeat results are stamped when a ping arrives: they have no lag.
        .exclude(monitor__kind=Monitor.Kind.HEARTBEAT)
    )
    if connection.vendor == "postgresql":
        return _lag_in_postgres(results)
    rows = results.order_by("-scheduled_at").values_list("scheduled_at", "started_at")
    lags = sorted(
        max(0.0, (started - slot).total_seconds()) for slot, started in rows[:SAMPLE_LIMIT]
    )
    if not lags:
        return None
    return Lag(len(lags), percentile(lags, 50), percentile(lags, 99), lags[-1])


def _lag_in_postgres(results: QuerySet[ProbeResult]) -> Lag | None:
    # Computed by the database: readiness and every worker's heartbeat ask for
    # this, and a minute of a large fleet is tens of thousands of rows.
    inner, params = results.values("scheduled_at", "started_at").query.sql_with_params()
    sql = (
        "SELECT count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY lag), "  # noqa: S608
        "percentile_disc(0.99) WITHIN GROUP (ORDER BY lag), max(lag) FROM ("
        "SELECT greatest(0, extract(epoch FROM started_at - scheduled_at)) AS lag "
        f"FROM ({inner}) AS recent) AS lags"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        count, p50, p99, worst = cursor.fetchone()
    if not count:
        return None
    return Lag(count, float(p50), float(p99), float(worst))


FLEET_MONITOR = "Watchpost fleet"


def fleet_monitor() -> Monitor:
    monitor, _ = Monitor.objects.get_or_create(
        kind=Monitor.Kind.INTERNAL,
        name=FLEET_MONITOR,
        defaults={
            "severity": Monitor.Severity.CRITICAL,
            "description": "Beat's system tick is running and probes start on their slots. "
            "Down means no monitor is being checked.",
        },
    )
    return monitor


def assess(now: datetime) -> tuple[str, str]:
    """The fleet's status and why: down without a recent tick, degraded when probes run late."""
    tick = Heartbeat.objects.filter(kind=Heartbeat.Kind.BEAT).order_by("-seen_at").first()
    if tick is None:
        return Monitor.Status.PENDING, "no system tick recorded yet"
    age = (now - tick.seen_at).total_seconds()
    if age > settings.BEAT_STALE_AFTER:
        return Monitor.Status.DOWN, (
            f"no system tick for {age:.0f} s: beat or the dispatch worker is down, "
            "so no monitor is being checked"
        )
    lag = recent_lag(timedelta(seconds=60), now)
    if lag is not None and lag.p99 > settings.FLEET_LAG_LIMIT:
        return Monitor.Status.DEGRADED, (
            f"probes start late: lag p99 {lag.p99:.1f} s over the last minute "
            f"(limit {settings.FLEET_LAG_LIMIT:g} s)"
        )
    lag_text = f", probe start lag p99 {lag.p99 * 1000:.0f} ms" if lag else ""
    return Monitor.Status.UP, f"system tick {age:.0f} s ago{lag_text}"


def record_fleet_status(now: datetime | None = None) -> StatusChange | None:
    """Judge the fleet and write a StatusChange when its status moves.

    Every worker calls this from its heartbeat thread, which keeps running
    when beat is gone: that is what makes it a dead-man's switch. The row lock
    makes concurrent workers agree on one change.
    """
    now = now or timezone.now()
    status, reason = assess(now)
    monitor_id = fleet_monitor().pk
    with transaction.atomic():
        monitor = Monitor.objects.select_for_update().get(pk=monitor_id)
        if monitor.paused:
            return None
        change = None
        if status != monitor.status and status != Monitor.Status.PENDING:
            change = StatusChange.objects.create(
                monitor=monitor,
                from_status=monitor.status,
                to_status=status,
                reason=reason,
                created_at=now,
            )
            announce_status_changes()
            monitor.status, monitor.status_since = status, now
        monitor.last_checked_at, monitor.last_reason = now, reason
        monitor.save(update_fields=["status", "status_since", "last_checked_at", "last_reason"])
    return change
