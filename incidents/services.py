"""Every change to an incident goes through a function here.

Each locks the incident row, checks the move against Incident.TRANSITIONS,
saves with update_fields, appends an IncidentEvent, and schedules deliveries
on commit. The admin, the acknowledge link, the API and the on-call console
all call these.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from checks.models import Monitor, StatusChange
from incidents import escalation
from incidents.escalation import record
from incidents.events import incident_opened, incident_resolved, send_on_commit
from incidents.maintenance import active_window
from incidents.models import Incident, IncidentEvent

logger = logging.getLogger(__name__)

Status = Incident.Status
Kind = IncidentEvent.Kind
Severity = Monitor.Severity
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}
# Advisory lock namespace for "processing status changes of monitor N".
MONITOR_LOCK = 0x57504D


class TransitionError(Exception):
    """The incident cannot make that move (e.g. acknowledging a resolved incident)."""


# --- Status changes → incidents --------------------------------------------------


def process_status_changes(limit: int = 500) -> int:
    """Turn unprocessed StatusChange rows into incident moves; returns how many."""
    done = settle_quiet_changes()
    monitor_ids = list(
        StatusChange.objects.unprocessed()
        .order_by("created_at", "id")
        .values_list("monitor_id", flat=True)[:limit]
    )
    for monitor_id in dict.fromkeys(monitor_ids):
        try:
            done += process_monitor_changes(monitor_id)
        except Exception:  # one broken monitor must not stop the others
            logger.exception(
                "status changes of monitor %s failed", monitor_id, extra={"monitor_id": monitor_id}
            )
    return done


def settle_quiet_changes() -> int:
    """Mark processed, in one statement, the changes that can move no incident.

    A monitor coming up (or paused) with no open incident and nothing earlier
    waiting has nothing to resolve: every new monitor's first result is such
    a change, and a thousand monitors added at once would otherwise hold a
    worker for a lock, a query and a write each. Both conditions are read in
    the statement's one snapshot, so a down change being applied at the same
    moment (it holds the monitor's rows until it commits) keeps the recovery
    after it on the ordinary path.
    """
    earlier = StatusChange.objects.unprocessed().filter(
        Q(created_at__lt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), id__lt=OuterRef("id")),
        monitor_id=OuterRef("monitor_id"),
    )
    incident = Incident.objects.open().filter(monitor_id=OuterRef("monitor_id"))
    return (
        StatusChange.objects.unprocessed()
        .filter(to_status__in=[Monitor.Status.UP, Monitor.Status.PAUSED])
        .exclude(Exists(earlier))
        .exclude(Exists(incident))
        .update(processed_at=timezone.now())
    )


def process_monitor_changes(monitor_id: int) -> int:
    """One monitor's changes, in order, in one transaction.

    Changes of one monitor must be applied in order (down then up), so a
    worker takes the monitor's advisory lock and applies all its unprocessed
    rows; each row is claimed by a conditional UPDATE, so a row another worker
    already applied is skipped, never applied twice.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [MONITOR_LOCK, monitor_id])
        changes = list(
            StatusChange.objects.unprocessed()
            .filter(monitor_id=monitor_id)
            .select_related("monitor")
            .order_by("created_at", "id")
        )
        done = 0
        now = timezone.now()
        for change in changes:
            claimed = StatusChange.objects.filter(pk=change.pk, processed_at__isnull=True).update(
                processed_at=now
            )
            if claimed:
                apply_change(change)
                done += 1
    return done


def apply_change(change: StatusChange) -> None:
    to = change.to_status
    if to in (Monitor.Status.DOWN, Monitor.Status.DEGRADED):
        monitor_failing(change)
    elif to == Monitor.Status.UP:
        close_monitor_incident(change, f"{change.monitor.name} recovered")
    elif to == Monitor.Status.PAUSED:
        close_monitor_incident(change, f"{change.monitor.name} was paused")


def severity_of(change: StatusChange) -> str:
    """Down pages at the monitor's severity; degraded (a warning) at low."""
    if change.to_status == Monitor.Status.DOWN:
        return change.monitor.severity
    return Severity.LOW


def monitor_failing(change: StatusChange) -> None:
    monitor, now = change.monitor, change.created_at
    severity = severity_of(change)
    incident = Incident.objects.select_for_update().filter(monitor=monitor).open().first()
    if incident is not None:
        worsen(incident, change, severity)
    elif (incident := reopenable(monitor, now)) is not None:
        reopen(incident, change, severity)
        start_paging(incident, timezone.now())
    else:
        incident = Incident.objects.create(
            monitor=monitor,
            title=f"{monitor.name} is {change.to_status}",
            severity=severity,
            reason=change.reason,
            opened_at=now,
        )
        record(
            incident,
            Kind.OPENED,
            f"{monitor.name} is {change.to_status}: {change.reason}",
            now,
            actor="Watchpost",
        )
        start_paging(incident, timezone.now())
        send_on_commit(incident_opened, incident)
    if change.to_status == Monitor.Status.DOWN:
        suppress_dependents(monitor, timezone.now())


def reopenable(monitor: Monitor, at: datetime) -> Incident | None:
    window = timedelta(seconds=settings.INCIDENT_REOPEN_WINDOW)
    return (
        Incident.objects.select_for_update()
        .filter(monitor=monitor, status=Status.RESOLVED, resolved_at__gte=at - window)
        .order_by("-resolved_at")
        .first()
    )


def reopen(incident: Incident, change: StatusChange, severity: str) -> None:
    incident.status = Status.TRIGGERED
    incident.severity = severity
    incident.reason = change.reason
    incident.title = f"{change.monitor.name} is {change.to_status}"
    incident.acknowledged_at = incident.resolved_at = None
    incident.acknowledged_by = incident.resolved_by = incident.resolution_note = ""
    incident.save(
        update_fields=[
            "status", "severity", "reason", "title", "acknowledged_at", "resolved_at",
            "acknowledged_by", "resolved_by", "resolution_note",
        ]
    )  # fmt: skip
    record(
        incident,
        Kind.REOPENED,
        f"failed again within the re-open window: {change.reason}",
        change.created_at,
        actor="Watchpost",
    )
    send_on_commit(incident_opened, incident)


def worsen(incident: Incident, change: StatusChange, severity: str) -> None:
    """The monitor of an open incident changed between degraded and down."""
    record(
        incident,
        Kind.STATUS,
        f"{change.monitor.name} is {change.to_status}: {change.reason}",
        change.created_at,
        actor="Watchpost",
    )
    if SEVERITY_RANK[severity] >= SEVERITY_RANK[incident.severity]:
        return
    incident.severity, incident.reason = severity, change.reason
    incident.title = f"{change.monitor.name} is {change.to_status}"
    incident.save(update_fields=["severity", "reason", "title"])
    if incident.status == Status.TRIGGERED and not incident.suppression:
        # A warning became an outage: page by the policy of the new severity.
        start_paging(incident, timezone.now())


# --- Paging ------------------------------------------------------------------------


def suppression_of(incident: Incident, now: datetime) -> tuple[str, Monitor | None, str]:
    """Why this incident must not page now: (kind, parent, explanation) or ("", None, "")."""
    monitor = incident.monitor
    if monitor is None:
        return "", None, ""
    parent, seen = monitor.depends_on, {monitor.pk}
    while parent is not None and parent.pk not in seen:
        if parent.status == Monitor.Status.DOWN:
            return Incident.Suppression.DEPENDENCY, parent, f"its parent {parent.name} is down"
        seen.add(parent.pk)
        parent = parent.depends_on
    window = active_window(monitor, now)
    if window is not None:
        until = timezone.localtime(window.ends_at).strftime("%Y-%m-%d %H:%M %Z")
        return (
            Incident.Suppression.MAINTENANCE,
            None,
            f"maintenance window “{window.maintenance.title}” until {until}",
        )
    return "", None, ""


def start_paging(incident: Incident, now: datetime) -> None:
    """Snapshot the policy and run its first step (when not suppressed)."""
    kind, parent, why = suppression_of(incident, now)
    if kind:
        suppress(incident, kind, parent, why, now)
        return
    policy = escalation.pick_policy(incident)
    incident.suppression, incident.suppressed_by = "", None
    incident.policy = escalation.snapshot(policy) if policy else None
    incident.step = incident.repeat = incident.reminders = 0
    incident.escalation_token = uuid.uuid4()
    incident.next_escalation_at = None
    if policy is None or not incident.policy["steps"]:
        record(
            incident,
            Kind.NOTIFIED,
            f"nobody paged: no escalation policy (or no steps) for severity {incident.severity}",
            now,
        )
    else:
        first = incident.policy["steps"][0]["delay_minutes"]
        incident.next_escalation_at = now + timedelta(minutes=first)
    save_paging(incident)
    if incident.next_escalation_at is not None and incident.next_escalation_at <= now:
        step_now(incident, now)


PAGING_FIELDS = [
    "suppression", "suppressed_by", "policy", "step", "repeat", "reminders",
    "escalation_token", "next_escalation_at",
]  # fmt: skip


def save_paging(incident: Incident) -> None:
    incident.save(update_fields=PAGING_FIELDS)


def step_now(incident: Incident, now: datetime) -> None:
    ids = escalation.advance(incident, now)
    incident.escalation_token = uuid.uuid4()
    save_paging(incident)
    escalation.schedule_delivery(ids)


def suppress(
    incident: Incident, kind: str, parent: Monitor | None, why: str, now: datetime
) -> None:
    incident.suppression, incident.suppressed_by = kind, parent
    incident.next_escalation_at = None
    incident.escalation_token = uuid.uuid4()
    save_paging(incident)
    escalation.cancel_pending_pages(incident)
    record(incident, Kind.SUPPRESSED, f"not paged: {why}", now, actor="Watchpost", suppression=kind)


def suppress_dependents(parent: Monitor, now: datetime) -> None:
    """Children that failed just before their parent stop paging: one root cause, one page."""
    children = Incident.objects.select_for_update().filter(
        monitor__depends_on=parent, status=Status.TRIGGERED, suppression=""
    )
    for child in children.order_by("id"):
        suppress(
            child, Incident.Suppression.DEPENDENCY, parent, f"its parent {parent.name} is down", now
        )


def escalate(incident_id: int, token: str | uuid.UUID) -> bool:
    """Run the incident's due escalation; a task whose token is stale does nothing."""
    now = timezone.now()
    with transaction.atomic():
        incident = Incident.objects.select_for_update().filter(pk=incident_id).first()
        if incident is None or str(incident.escalation_token) != str(token):
            return False
        if not incident.is_paging or incident.next_escalation_at is None:
            return False
        if incident.next_escalation_at > now:
            return False
        step_now(incident, now)
    return True


def due_escalations(now: datetime | None = None) -> list[tuple[int, str]]:
    now = now or timezone.now()
    rows = Incident.objects.escalation_due(now).filter(suppression="")
    return [(pk, str(token)) for pk, token in rows.values_list("id", "escalation_token")]


def review_suppressed(now: datetime | None = None) -> int:
    """Start paging incidents whose parent recovered or whose maintenance ended."""
    now = now or timezone.now()
    resumed = 0
    ids = list(
        Incident.objects.filter(status=Status.TRIGGERED)
        .exclude(suppression="")
        .values_list("id", flat=True)
    )
    for incident_id in ids:
        with transaction.atomic():
            incident = (
                Incident.objects.select_for_update(skip_locked=True).filter(pk=incident_id).first()
            )
            if incident is None or not incident.suppression:
                continue
            kind, _, _ = suppression_of(incident, now)
            if kind:
                continue
            record(
                incident,
                Kind.UNSUPPRESSED,
                "no longer suppressed and still failing: paging",
                now,
                actor="Watchpost",
            )
            start_paging(incident, now)
            resumed += 1
    return resumed


# --- People act on incidents ----------------------------------------------------


def locked(incident_id: int) -> Incident:
    return (
        Incident.objects.select_for_update(of=("self",))
        .select_related("monitor")
        .get(pk=incident_id)
    )


def move(incident: Incident, to: str) -> None:
    if to not in Incident.TRANSITIONS[incident.status]:
        raise TransitionError(f"a {incident.status} incident cannot become {to}")
    incident.status = to


def acknowledge(incident_id: int, actor: str, via: str = "") -> Incident:
    """Stop escalation; everyone already paged hears who acknowledged.

    Acknowledging an incident that is already acknowledged or resolved is a
    no-op (a link clicked twice, two people at once).
    """
    now = timezone.now()
    with transaction.atomic():
        incident = locked(incident_id)
        if incident.status != Status.TRIGGERED:
            return incident
        move(incident, Status.ACKNOWLEDGED)
        incident.acknowledged_at, incident.acknowledged_by = now, actor
        incident.next_escalation_at = None
        incident.escalation_token = uuid.uuid4()
        incident.save(
            update_fields=["status", "acknowledged_at", "acknowledged_by", *PAGING_FIELDS]
        )
        escalation.cancel_pending_pages(incident)
        how = f" via {via}" if via else ""
        record(incident, Kind.ACKNOWLEDGED, f"acknowledged by {actor}{how}", now, actor=actor)
        escalation.schedule_delivery(escalation.announce(incident, "acknowledged", actor, now))
    return incident


def resolve(incident_id: int, actor: str, note: str = "", via: str = "") -> Incident:
    """Close the incident; everyone already paged hears it. Resolving twice is a no-op."""
    now = timezone.now()
    with transaction.atomic():
        incident = locked(incident_id)
        if incident.status == Status.RESOLVED:
            return incident
        resolve_locked(incident, actor, note, via, now)
    return incident


def resolve_locked(incident: Incident, actor: str, note: str, via: str, now: datetime) -> None:
    move(incident, Status.RESOLVED)
    incident.resolved_at, incident.resolved_by = now, actor
    incident.resolution_note = note
    incident.next_escalation_at = None
    incident.escalation_token = uuid.uuid4()
    incident.save(
        update_fields=["status", "resolved_at", "resolved_by", "resolution_note", *PAGING_FIELDS]
    )
    escalation.cancel_pending_pages(incident)
    how = f" via {via}" if via else ""
    text = f"resolved by {actor}{how}" + (f": {note}" if note else "")
    record(incident, Kind.RESOLVED, text, now, actor=actor)
    send_on_commit(incident_resolved, incident)
    if not incident.suppression:
        escalation.schedule_delivery(escalation.announce(incident, "resolved", actor, now))


def close_monitor_incident(change: StatusChange, note: str) -> None:
    incident = Incident.objects.select_for_update().filter(monitor=change.monitor).open().first()
    if incident is not None:
        resolve_locked(incident, "Watchpost", note, "", timezone.now())


def add_note(incident_id: int, actor: str, text: str) -> IncidentEvent:
    text = text.strip()
    if not text:
        raise ValueError("a note needs some text")
    with transaction.atomic():
        incident = locked(incident_id)
        return record(incident, Kind.NOTE, text, timezone.now(), actor=actor)


def open_manual_incident(title: str, severity: str, actor: str, reason: str = "") -> Incident:
    """An incident someone declares by hand (no monitor); pages by its severity's policy."""
    now = timezone.now()
    with transaction.atomic():
        incident = Incident.objects.create(
            title=title, severity=severity, reason=reason, opened_at=now
        )
        record(incident, Kind.OPENED, f"declared by {actor}", now, actor=actor)
        start_paging(incident, now)
    return incident
