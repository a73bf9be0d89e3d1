"""The on-call schedule as an iCal feed, for calendar apps to subscribe to.

Calendar apps cannot log in, so the feed is public to whoever has its URL; the
URL carries the schedule's random feed key, and an unknown key is a 404.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.http import require_safe
from icalendar import Calendar, Event

from alerts.models import OnCallSchedule
from alerts.oncall import Shift, level_name, schedule_shifts

FEED_PAST = timedelta(weeks=1)
FEED_AHEAD = timedelta(weeks=8)


@require_safe
def oncall_ical(request: HttpRequest, feed_key: uuid.UUID) -> HttpResponse:
    schedule = get_object_or_404(OnCallSchedule, feed_key=feed_key)
    now = timezone.now()
    calendar = schedule_calendar(schedule, now - FEED_PAST, now + FEED_AHEAD, now)
    response = HttpResponse(calendar.to_ical(), content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="oncall-{schedule.pk}.ics"'
    return response


def schedule_calendar(
    schedule: OnCallSchedule, start: datetime, end: datetime, now: datetime
) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", "-//Watchpost//on-call schedule//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"On call: {schedule.name}")
    for shift in schedule_shifts(schedule, start, end):
        calendar.add_component(shift_event(schedule, shift, now))
    return calendar


def shift_event(schedule: OnCallSchedule, shift: Shift, now: datetime) -> Event:
    event = Event()
    event.add("uid", shift_uid(shift))
    event.add("dtstamp", now)
    event.add("dtstart", shift.starts_at.astimezone(UTC))
    event.add("dtend", shift.ends_at.astimezone(UTC))
    level = level_name(shift.layer.level)
    event.add("summary", f"{shift.contact.name} on call ({schedule.name} {level})")
    event.add("description", "override" if shift.is_override else "rotation shift")
    # Being on call is not being busy: the shift must not block meetings.
    event.add("transp", "TRANSPARENT")
    return event


def shift_uid(shift: Shift) -> str:
    """The same shift keeps its UID from one fetch to the next, so calendars update it.

    A layer's pieces never overlap, so the layer and the start tell them apart.
    """
    kind = "override" if shift.is_override else "shift"
    stamp = shift.starts_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    host = urlsplit(settings.SITE_URL).hostname or "watchpost"
    return f"oncall-{shift.layer.pk}-{kind}-{stamp}@{host}"
