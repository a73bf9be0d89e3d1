"""Incidents and their timelines.

An incident moves triggered → acknowledged → resolved (TRANSITIONS); every
move goes through incidents.services, which locks the row, checks the move,
and appends an IncidentEvent.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models
from django.db.models import Q

from checks.models import Monitor


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
