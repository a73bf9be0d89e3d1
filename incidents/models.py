"""Incidents, their timelines, and maintenance windows.

An incident moves triggered → acknowledged → resolved (TRANSITIONS); every
move goes through incidents.services, which locks the row, checks the move,
and appends an IncidentEvent.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from checks.models import Monitor, Tag
from monitorsite.validators import validate_timezone


class IncidentQuerySet(models.QuerySet["Incident"]):
    def open(self) -> IncidentQuerySet:
        return self.exclude(status=Incident.Status.RESOLVED)

    def escalation_due(self, now: datetime) -> IncidentQuerySet:
        return self.filter(status=Incident.Status.TRIGGERED, next_escalation_at__lte=now)


class Incident(models.Model):
    class Status(models.TextChoices):
        TRIGGERED = "triggered", "triggered"
        ACKNOWLEDGED = "acknowledged", "acknowledged"
        RESOLVED = "resolved", "resolved"

    class Suppression(models.TextChoices):
        NONE = "", "not suppressed"
        DEPENDENCY = "dependency", "its parent monitor is down"
        MAINTENANCE = "maintenance", "in a maintenance window"

    # Moves an incident may make. Re-opening (resolved → triggered) happens
    # only when its monitor fails again within INCIDENT_REOPEN_WINDOW.
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.TRIGGERED: frozenset({Status.ACKNOWLEDGED, Status.RESOLVED}),
        Status.ACKNOWLEDGED: frozenset({Status.RESOLVED}),
        Status.RESOLVED: frozenset({Status.TRIGGERED}),
    }

    monitor = models.ForeignKey(
        Monitor, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    title = models.CharField(max_length=300)
    severity = models.CharField(
        max_length=10, choices=Monitor.Severity.choices, default=Monitor.Severity.HIGH
    )
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.TRIGGERED)
    reason = models.TextField(blank=True, help_text="what the monitor saw when it opened")

    opened_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True)
    resolution_note = models.TextField(blank=True)

    suppression = models.CharField(
        max_length=15, choices=Suppression.choices, default=Suppression.NONE, blank=True
    )
    suppressed_by = models.ForeignKey(
        Monitor, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # The escalation policy as it was when paging started (a snapshot:
    # editing the policy never changes a page in flight).
    policy = models.JSONField(null=True, blank=True)
    step = models.PositiveSmallIntegerField(default=0, help_text="next step to run")
    repeat = models.PositiveSmallIntegerField(default=0)
    reminders = models.PositiveSmallIntegerField(default=0)
    next_escalation_at = models.DateTimeField(null=True, blank=True)
    # A new token whenever escalation is (re)started or stopped: a task
    # carrying an older token is stale and does nothing.
    escalation_token = models.UUIDField(default=uuid.uuid4)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["monitor"],
                condition=~Q(status="resolved"),
                name="incident_one_open_per_monitor",
                violation_error_message="this monitor already has an open incident",
            )
        ]
        indexes = [
            models.Index(
                fields=["next_escalation_at"],
                name="incident_escalation_due_idx",
                condition=Q(status="triggered"),
            ),
            models.Index(fields=["monitor", "-opened_at"], name="incident_monitor_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.RESOLVED

    @property
    def is_paging(self) -> bool:
        return self.status == self.Status.TRIGGERED and not self.suppression


class IncidentEvent(models.Model):
    class Kind(models.TextChoices):
        OPENED = "opened", "opened"
        NOTIFIED = "notified", "notified"
        ESCALATED = "escalated", "escalated"
        DELIVERY_FAILED = "delivery_failed", "delivery failed"
        ACKNOWLEDGED = "acknowledged", "acknowledged"
        NOTE = "note", "note"
        RESOLVED = "resolved", "resolved"
        REOPENED = "reopened", "reopened"
        SUPPRESSED = "suppressed", "suppressed"
        UNSUPPRESSED = "unsuppressed", "paging resumed"
        STATUS = "status", "monitor status"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    at = models.DateTimeField()
    actor = models.CharField(max_length=200, blank=True)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["incident", "at"], name="incidentevent_timeline_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"


class Maintenance(models.Model):
    """A window in which failures page no one.

    One-off (starts_at..ends_at), or recurring: on the chosen weekdays or at
    each cron time, for duration_minutes, in its timezone.
    """

    class Recurrence(models.TextChoices):
        ONCE = "once", "once"
        WEEKLY = "weekly", "weekly, on chosen days"
        CRON = "cron", "cron expression"

    title = models.CharField(max_length=200)
    recurrence = models.CharField(max_length=10, choices=Recurrence.choices, default="once")
    starts_at = models.DateTimeField(
        help_text="once: when it starts; recurring: from when the rule applies"
    )
    ends_at = models.DateTimeField(
        null=True, blank=True, help_text="once: when it ends; recurring: until when (optional)"
    )
    weekdays = models.JSONField(
        default=list, blank=True, help_text="weekly: days 0 (Monday) … 6 (Sunday)"
    )
    start_time = models.TimeField(null=True, blank=True, help_text="weekly: local start time")
    cron = models.CharField(max_length=100, blank=True, help_text="cron: e.g. 0 3 * * SUN")
    duration_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="recurring: length"
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    monitors = models.ManyToManyField(Monitor, blank=True, related_name="maintenances")
    tags = models.ManyToManyField(
        Tag, blank=True, related_name="maintenances", help_text="every monitor with these tags"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-starts_at"]
        verbose_name = "maintenance window"

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        from incidents.maintenance import clean_maintenance

        clean_maintenance(self)
