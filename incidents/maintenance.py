"""When maintenance windows are in effect, and for which monitors."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter
from django.core.exceptions import ValidationError
from django.db.models import Q

from checks.models import Monitor
from incidents.models import Maintenance

Recurrence = Maintenance.Recurrence


@dataclass(frozen=True)
class Window:
    maintenance: Maintenance
    starts_at: datetime
    ends_at: datetime


def window_at(maintenance: Maintenance, at: datetime) -> Window | None:
    """The occurrence of `maintenance` that covers `at`, if any."""
    if at < maintenance.starts_at or (maintenance.ends_at and at >= maintenance.ends_at):
        return None
    if maintenance.recurrence == Recurrence.ONCE:
        return Window(maintenance, maintenance.starts_at, maintenance.ends_at or at)
    length = timedelta(minutes=maintenance.duration_minutes or 0)
    start = last_start(maintenance, at)
    # Occurrences before the rule's own start do not count.
    if start is None or start < maintenance.starts_at or at >= start + length:
        return None
    return Window(maintenance, start, start + length)


def last_start(maintenance: Maintenance, at: datetime) -> datetime | None:
    """The latest occurrence start at or before `at` (recurring windows)."""
    tz = zoneinfo.ZoneInfo(maintenance.timezone)
    local = at.astimezone(tz)
    if maintenance.recurrence == Recurrence.CRON:
        # croniter walks wall-clock times in the given zone, DST included.
        return croniter(maintenance.cron, local + timedelta(seconds=1)).get_prev(datetime)
    if maintenance.start_time is None or not maintenance.weekdays:
        return None
    days = {int(day) for day in maintenance.weekdays}
    length = timedelta(minutes=maintenance.duration_minutes or 0)
    # A window may run past midnight, so look back as far as its length reaches.
    for back in range(0, 8 + length.days):
        day = local.date() - timedelta(days=back)
        if day.weekday() not in days:
            continue
        start = datetime.combine(day, maintenance.start_time, tzinfo=tz)
        if start <= local:
            return start
    return None


def active_window(monitor: Monitor, at: datetime) -> Window | None:
    """A maintenance window covering `monitor` at `at` (the one ending last), if any."""
    tag_ids = list(monitor.tags.values_list("id", flat=True))
    candidates = (
        Maintenance.objects.filter(
            Q(monitors=monitor) | Q(tags__in=tag_ids) | Q(components__monitors=monitor),
            starts_at__lte=at,
        )
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=at))
        .distinct()
    )
    windows = [w for m in candidates if (w := window_at(m, at)) is not None]
    return max(windows, key=lambda w: w.ends_at, default=None)


def clean_maintenance(maintenance: Maintenance) -> None:
    """Check the fields the chosen recurrence needs; errors name the field."""
    errors: dict[str, str] = {}
    kind = maintenance.recurrence
    if kind == Recurrence.ONCE:
        if maintenance.ends_at is None:
            errors["ends_at"] = "a one-off window needs an end"
        elif maintenance.starts_at and maintenance.ends_at <= maintenance.starts_at:
            errors["ends_at"] = "the window must end after it starts"
    else:
        if not maintenance.duration_minutes:
            errors["duration_minutes"] = "a recurring window needs a length in minutes"
        if (
            maintenance.ends_at
            and maintenance.starts_at
            and maintenance.ends_at <= maintenance.starts_at
        ):
            errors["ends_at"] = "the rule must end after it starts"
    if kind == Recurrence.WEEKLY:
        days = maintenance.weekdays
        if (
            not days
            or not isinstance(days, list)
            or any(not isinstance(d, int) or not 0 <= d <= 6 for d in days)
        ):
            errors["weekdays"] = "choose at least one day, as numbers 0 (Monday) to 6 (Sunday)"
        if maintenance.start_time is None:
            errors["start_time"] = "a weekly window needs a start time"
    if kind == Recurrence.CRON and not (maintenance.cron and croniter.is_valid(maintenance.cron)):
        errors["cron"] = f"{maintenance.cron!r} is not a cron expression (e.g. 0 3 * * SUN)"
    if errors:
        raise ValidationError(errors)
