"""Maintenance windows: when failures page no one (and the status page says so)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from checks.models import Monitor, Tag
from monitorsite.validators import validate_timezone


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
    components = models.ManyToManyField(
        "incidents.Component",
        blank=True,
        related_name="maintenances",
        help_text="status page components: every monitor feeding them, and the page shows them",
    )
    public = models.BooleanField(
        default=False, help_text="announce it on the status pages of its components"
    )
    public_description = models.TextField(blank=True, help_text="what the status page says")
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
