"""Watchpost's own bookkeeping: liveness of its processes and its metric counters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.utils import timezone


class HeartbeatQuerySet(models.QuerySet["Heartbeat"]):
    def record(self, kind: str, name: str, info: dict[str, Any] | None = None) -> None:
        self.update_or_create(
            kind=kind, name=name, defaults={"seen_at": timezone.now(), "info": info or {}}
        )

    def fresh(self, kind: str, within: timedelta, now: datetime | None = None) -> HeartbeatQuerySet:
        now = now or timezone.now()
        return self.filter(kind=kind, seen_at__gte=now - within)


class Heartbeat(models.Model):
    """The last time a Watchpost process proved it was alive."""

    class Kind(models.TextChoices):
        BEAT = "beat", "beat (system tick)"
        WORKER = "worker", "worker"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200)
    seen_at = models.DateTimeField()
    info = models.JSONField(default=dict, blank=True)

    objects = HeartbeatQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "name"], name="heartbeat_kind_name_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class MetricValue(models.Model):
    """One Prometheus sample, summed across every process that fed it.

    Workers add their deltas here in one upsert per task, so /metrics served by
    any web process (and any number of worker hosts) reports the fleet's total.
    """

    name = models.CharField(max_length=120)
    labels = models.CharField(max_length=400, blank=True)
    value = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["name", "labels"], name="metricvalue_name_labels_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}{{{self.labels}}} {self.value}"
