"""The public status page: pages by host, components fed by monitors, public incidents
with their update timelines, and subscribers.

Only what an admin wrote here is ever shown publicly: component names and
descriptions, public incident titles and updates. Monitor targets, reasons and
internal incident texts stay inside.
"""

from __future__ import annotations

import secrets
import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from checks.models import Monitor
from incidents.models.incident import Incident
from monitorsite.validators import validate_timezone

host_validator = RegexValidator(
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$",
    "a host name such as status.example.com (lower case, no scheme or path)",
)


class ComponentStatus(models.TextChoices):
    """Statuspage's component states, best first (the order is the severity)."""

    OPERATIONAL = "operational", "Operational"
    DEGRADED_PERFORMANCE = "degraded_performance", "Degraded performance"
    PARTIAL_OUTAGE = "partial_outage", "Partial outage"
    MAJOR_OUTAGE = "major_outage", "Major outage"
    UNDER_MAINTENANCE = "under_maintenance", "Under maintenance"


class StatusPage(models.Model):
    title = models.CharField(max_length=200)
    host = models.CharField(
        max_length=253,
        unique=True,
        validators=[host_validator],
        help_text="requests for this host get this page, e.g. status.example.com",
    )
    description = models.TextField(blank=True, help_text="shown under the title")
    logo_url = models.URLField(max_length=500, blank=True)
    support_url = models.URLField(max_length=500, blank=True, help_text="“Contact support” link")
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="dates and times on the page are shown in this timezone",
    )
    history_days = models.PositiveSmallIntegerField(
        default=90, help_text="days of uptime bars (at most 90)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return f"{self.title} ({self.host})"

    def save(self, *args: object, **kwargs: object) -> None:
        self.host = self.host.strip().lower()
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class ComponentGroup(models.Model):
    page = models.ForeignKey(StatusPage, on_delete=models.CASCADE, related_name="groups")
    name = models.CharField(max_length=200)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["page", "position", "id"]

    def __str__(self) -> str:
        return self.name


class Component(models.Model):
    page = models.ForeignKey(StatusPage, on_delete=models.CASCADE, related_name="components")
    group = models.ForeignKey(
        ComponentGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="components"
    )
    name = models.CharField(max_length=200, help_text="the public name")
    description = models.CharField(max_length=500, blank=True, help_text="public; one line")
    position = models.PositiveSmallIntegerField(default=0)
    monitors = models.ManyToManyField(
        Monitor,
        blank=True,
        related_name="components",
        help_text="the component's status follows these monitors",
    )
    status_override = models.CharField(
        max_length=25,
        choices=ComponentStatus.choices,
        blank=True,
        help_text="shown instead of what the monitors say, until cleared",
    )
    auto_publish = models.BooleanField(
        default=False,
        help_text="publish an incident on the page automatically when one of its monitors fails",
    )
    show_uptime = models.BooleanField(default=True)
    show_response_time = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["page", "position", "id"]

    def __str__(self) -> str:
        return self.name


class PublicIncident(models.Model):
    """An incident as the public sees it: a title, an impact and a timeline of updates."""

    class Status(models.TextChoices):
        INVESTIGATING = "investigating", "Investigating"
        IDENTIFIED = "identified", "Identified"
        MONITORING = "monitoring", "Monitoring"
        RESOLVED = "resolved", "Resolved"

    class Impact(models.TextChoices):
        NONE = "none", "None"
        MINOR = "minor", "Minor"
        MAJOR = "major", "Major"
        CRITICAL = "critical", "Critical"

    page = models.ForeignKey(StatusPage, on_delete=models.CASCADE, related_name="incidents")
    title = models.CharField(max_length=300, help_text="public")
    impact = models.CharField(max_length=10, choices=Impact.choices, default=Impact.MINOR)
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.INVESTIGATING)
    components = models.ManyToManyField(Component, blank=True, related_name="incidents")
    incident = models.ForeignKey(
        Incident,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="public_incidents",
        help_text="the internal incident this tells the public about, if any",
    )
    published_at = models.DateTimeField(
        null=True, blank=True, help_text="empty: a draft, not on the page"
    )
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["page", "-created_at"], name="publicincident_page_idx")]
        constraints = [
            # One public incident per internal incident and page (auto-publish
            # running twice must not post twice).
            models.UniqueConstraint(
                fields=["page", "incident"],
                condition=Q(incident__isnull=False),
                name="publicincident_once_per_incident",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_published(self) -> bool:
        return self.published_at is not None


class PublicUpdate(models.Model):
    """One entry of a public incident's timeline (investigating … resolved)."""

    incident = models.ForeignKey(PublicIncident, on_delete=models.CASCADE, related_name="updates")
    status = models.CharField(max_length=15, choices=PublicIncident.Status.choices)
    body = models.TextField(help_text="public")
    created_at = models.DateTimeField(default=timezone.now)
    author = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_status_display()}: {self.body[:60]}"


class Subscriber(models.Model):
    """Someone who wants to hear about incidents: by email (double opt-in) or webhook."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    page = models.ForeignKey(StatusPage, on_delete=models.CASCADE, related_name="subscribers")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    email = models.EmailField(blank=True)
    url = models.URLField(max_length=500, blank=True)
    # Webhook bodies are signed with this (HMAC-SHA256), so receivers can check them.
    secret = models.CharField(max_length=64, default=secrets.token_hex, editable=False)
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["page", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["page", "email"], condition=~Q(email=""), name="subscriber_email_once"
            ),
            models.UniqueConstraint(
                fields=["page", "url"], condition=~Q(url=""), name="subscriber_url_once"
            ),
        ]

    def __str__(self) -> str:
        return self.email or self.url
