"""Deleting what is past its retention, in short transactions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from checks.models import Ping, ProbeResult

CHUNK = 5000


def purge_old_results(now: datetime | None = None) -> int:
    """Delete raw results and processed pings older than RESULT_RETENTION_DAYS.

    Chunks keep each delete short, so probes writing results never wait long.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.RESULT_RETENTION_DAYS)
    old_pings = Ping.objects.filter(received_at__lt=cutoff, processed_at__isnull=False)
    return _delete_in_chunks(ProbeResult.objects.filter(scheduled_at__lt=cutoff)) + (
        _delete_in_chunks(old_pings)
    )


def _delete_in_chunks(queryset: QuerySet[Any]) -> int:
    deleted = 0
    while ids := list(queryset.values_list("id", flat=True)[:CHUNK]):
        queryset.model.objects.filter(id__in=ids).delete()
        deleted += len(ids)
    return deleted
