"""The on-call console at /oncall/: what the person on call opens at 3 a.m.

Server-rendered and complete with JavaScript off. The same sections are served
alone at /oncall/fragment/ for console.js to poll and swap in. Every button
posts to `act`, which calls the same services as the admin and the
acknowledge link, then redirects back (post/redirect/get) with a message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, IntegerField, Prefetch, QuerySet, When
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from alerts.models import Contact, OnCallSchedule
from alerts.oncall import level_name, next_shifts, who_is_on_call
from checks.models import Monitor
from incidents import services
from incidents.models import Incident, IncidentEvent

VIA = "on-call console"
POLL_SECONDS = 15
TIMELINE_LENGTH = 10  # events shown per incident; the admin has the rest
MY_SHIFTS = 5

Status = Incident.Status
View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Staff only: the anonymous are sent to the admin login, other users get 403.

    Not admin's staff_member_required: that sends a logged-in non-staff user
    to a login form they cannot pass, where a plain "forbidden" is clearer.
    """

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not (user.is_active and user.is_staff):
            raise PermissionDenied("the on-call console is for staff")
        return view(request, *args, **kwargs)

    return guarded


def actor_of(request: HttpRequest) -> str:
    user = request.user
    return user.get_full_name() or user.get_username()


def span(delta: timedelta) -> str:
    """A duration as the on-call person reads it: "12 min", "3 h 5 min", "2 days 4 h"."""
    minutes = max(int(delta.total_seconds()) // 60, 0)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    unit = "day" if days == 1 else "days"
    return f"{days} {unit} {hours} h" if hours else f"{days} {unit}"


# --- What the sections show -------------------------------------------------------------


@dataclass
class OpenIncident:
    incident: Incident
    age: str
    acknowledged_ago: str
    timeline: list[IncidentEvent]  # the latest events, oldest first
    events: int  # how many the incident has in all
    runbook_url: str

    @property
    def earlier(self) -> int:
        return self.events - len(self.timeline)


@dataclass
class OnCallNow:
    schedule: OnCallSchedule
    levels: list[tuple[str, Contact | None]]


@dataclass
class MyShift:
    schedule: str
    level: str
    starts_at: datetime
    ends_at: datetime
    is_override: bool
    is_now: bool
    starts_in: str


@dataclass
class FailingMonitor:
    monitor: Monitor
    failing_for: str


def open_incidents(now: datetime) -> list[OpenIncident]:
    """Triggered before acknowledged, then by severity, then the oldest first."""
    status_rank = Case(
        When(status=Status.TRIGGERED, then=0), default=1, output_field=IntegerField()
    )
    severity_rank = Case(
        *[When(severity=severity, then=rank) for severity, rank in services.SEVERITY_RANK.items()],
        default=len(services.SEVERITY_RANK),
        output_field=IntegerField(),
    )
    latest = IncidentEvent.objects.order_by("-at", "-id")[:TIMELINE_LENGTH]
    found = (
        Incident.objects.open()
        .select_related("monitor", "suppressed_by")
        .annotate(status_rank=status_rank, severity_rank=severity_rank, event_count=Count("events"))
        .prefetch_related(Prefetch("events", queryset=latest, to_attr="latest_events"))
        .order_by("status_rank", "severity_rank", "opened_at", "id")
    )
    return [open_incident(incident, now) for incident in found]


def open_incident(incident: Incident, now: datetime) -> OpenIncident:
    acked = incident.acknowledged_at
    runbook = incident.monitor.runbook_url if incident.monitor else ""
    return OpenIncident(
        incident=incident,
        age=span(now - incident.opened_at),
        acknowledged_ago=span(now - acked) if acked else "",
        timeline=list(reversed(incident.latest_events)),
        events=incident.event_count,
        # Only web links become hrefs, whatever found its way into the field.
        runbook_url=runbook if runbook.startswith(("https://", "http://")) else "",
    )


def on_call_now(now: datetime) -> list[OnCallNow]:
    rows = []
    for schedule in OnCallSchedule.objects.order_by("name"):
        who = who_is_on_call(schedule, now)
        levels = [(level_name(level), who[level]) for level in sorted(who)]
        rows.append(OnCallNow(schedule, levels))
    return rows


def my_shifts(contact: Contact | None, now: datetime) -> list[MyShift]:
    if contact is None:
        return []
    return [
        MyShift(
            schedule=shift.layer.schedule.name,
            level=level_name(shift.layer.level),
            starts_at=shift.starts_at,
            ends_at=shift.ends_at,
            is_override=shift.is_override,
            is_now=shift.starts_at <= now,
            starts_in=span(shift.starts_at - now),
        )
        for shift in next_shifts(contact, now, limit=MY_SHIFTS)
    ]


def failing_monitors(now: datetime) -> list[FailingMonitor]:
    """Down before degraded, the longest failing first."""
    rank = Case(When(status=Monitor.Status.DOWN, then=0), default=1, output_field=IntegerField())
    found: QuerySet[Monitor] = (
        Monitor.objects.filter(status__in=[Monitor.Status.DOWN, Monitor.Status.DEGRADED])
        .annotate(rank=rank)
        .order_by("rank", "status_since", "name")
    )
    return [FailingMonitor(monitor, span(now - monitor.status_since)) for monitor in found]


def sections(request: HttpRequest) -> dict[str, Any]:
    now = timezone.now()
    incidents = open_incidents(now)
    triggered = [row for row in incidents if row.incident.status == Status.TRIGGERED]
    acknowledged = [row for row in incidents if row.incident.status != Status.TRIGGERED]
    me = Contact.objects.filter(user=request.user).first()
    waiting = f"({len(triggered)}) " if triggered else ""
    return {
        "now": now,
        "page_title": f"{waiting}On call · Watchpost",
        "poll_seconds": POLL_SECONDS,
        "triggered": triggered,
        "acknowledged": acknowledged,
        "open_count": len(incidents),
        "failing": failing_monitors(now),
        "on_call": on_call_now(now),
        "me": me,
        "my_shifts": my_shifts(me, now),
    }


# --- Views ------------------------------------------------------------------------------


@staff_required
@require_safe
@never_cache
def console(request: HttpRequest) -> HttpResponse:
    return render(request, "incidents/console/page.html", sections(request))


@staff_required
@require_safe
@never_cache
def fragment(request: HttpRequest) -> HttpResponse:
    """The sections alone, for console.js to swap in every POLL_SECONDS."""
    return render(request, "incidents/console/sections.html", sections(request))


@staff_required
@require_POST
def act(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """A button on an incident: acknowledge, resolve or add a note; then back to the console."""
    handler = ACTIONS.get(action)
    if handler is None:
        raise Http404(f"no action {action!r}")
    incident = Incident.objects.select_related("monitor").filter(pk=pk).first()
    if incident is None:
        messages.error(request, f"There is no incident #{pk}; it may have been deleted.")
    else:
        try:
            handler(request, incident, actor_of(request))
        except services.TransitionError as error:
            messages.error(request, f"Nothing changed on {incident}: {error}.")
    return redirect("oncall-console")


def already(incident: Incident) -> str:
    now = timezone.now()
    if incident.status == Status.RESOLVED:
        by = f" by {incident.resolved_by}" if incident.resolved_by else ""
        ago = span(now - incident.resolved_at) if incident.resolved_at else ""
        return f"{incident} was already resolved{by} {ago} ago; nothing changed."
    ago = span(now - incident.acknowledged_at) if incident.acknowledged_at else ""
    return f"{incident} was already acknowledged by {incident.acknowledged_by} {ago} ago."


def acknowledge(request: HttpRequest, incident: Incident, actor: str) -> None:
    if incident.status != Status.TRIGGERED:
        messages.info(request, already(incident))
        return
    done = services.acknowledge(incident.pk, actor, via=VIA)
    if done.status == Status.ACKNOWLEDGED and done.acknowledged_by == actor:
        messages.success(request, f"Acknowledged {done}")
    else:  # someone else got there between the page and the click
        messages.info(request, already(done))


def resolve(request: HttpRequest, incident: Incident, actor: str) -> None:
    note = request.POST.get("text", "").strip()
    if incident.status != Status.RESOLVED:
        incident = services.resolve(incident.pk, actor, note=note, via=VIA)
        if incident.resolved_by == actor:
            messages.success(request, f"Resolved {incident}" + (" with your note" if note else ""))
            return
    # Resolved by someone else first: what the person typed is kept as a note.
    if note:
        services.add_note(incident.pk, actor, note)
        messages.info(request, already(incident) + " Your note was added to its timeline.")
    else:
        messages.info(request, already(incident))


def add_note(request: HttpRequest, incident: Incident, actor: str) -> None:
    try:
        services.add_note(incident.pk, actor, request.POST.get("text", ""))
    except ValueError as error:
        messages.error(request, f"Nothing added to {incident}: {error}.")
        return
    messages.success(request, f"Added a note to {incident}")


ACTIONS: dict[str, Callable[[HttpRequest, Incident, str], None]] = {
    "acknowledge": acknowledge,
    "resolve": resolve,
    "note": add_note,
}
