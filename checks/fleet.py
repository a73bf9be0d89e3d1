"""How the probe fleet keeps time: the lag between a slot and its probe's start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from checks.assertions import percentile
from checks.models import Monitor, ProbeResult

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
    rows = (
        ProbeResult.objects.filter(scheduled_at__gte=now - window, scheduled_at__lte=now)
        # Heartbeat results are stamped when a ping arrives: they have no lag.
        .exclude(monitor__kind=Monitor.Kind.HEARTBEAT)
        .order_by("-scheduled_at")
        .values_list("scheduled_at", "started_at")[:SAMPLE_LIMIT]
    )
    lags = sorted(max(0.0, (started - slot).total_seconds()) for slot, started in rows)
    if not lags:
        return None
    return Lag(len(lags), percentile(lags, 50), percentile(lags, 99), lags[-1])
