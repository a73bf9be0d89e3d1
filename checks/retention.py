"""Deleting what is past its retention, in short transactions."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from checks.models import ProbeResult

CHUNK = 5000


def purge_old_results(now: datetime | None = None) -> int:
    """Delete raw results older than RESULT_RETENTION_DAYS; returns how many went.

    Chunks keep each delete short, so probes writing results never wait long.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.RESULT_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(
            ProbeResult.objects.filter(scheduled_at__lt=cutoff).values_list("id", flat=True)[:CHUNK]
        )
        if not ids:
            return deleted
        ProbeResult.objects.filter(id__in=ids).delete()
        deleted += len(ids)
