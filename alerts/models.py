"""Who is paged, through what, and the log of every delivery.

Channels and contacts are where messages go; on-call schedules say which
contact a layer (primary / secondary / tertiary) means at a given time;
escalation policies order those targets in steps. Notifications are written as
rows before anything is sent, so a delivery is never lost and never doubled.
"""

from __future__ import annotations

import uuid
from datetime import time

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alerts.validators import validate_e164
from checks.models import Monitor
from monitorsite.validators import validate_timezone


class Channel(models.Model):
    """A shared destination: a chat room, a webhook, a PagerDuty service, a phone list."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack incoming webhook"
        DISCORD = "discord", "Discord webhook"
        TEAMS = "teams", "Microsoft Teams webhook"
        WEBHOOK = "webhook", "Generic webhook"
        PAGERDUTY = "pagerduty", "PagerDuty Events API v2"
        TELEGRAM = "telegram", "Telegram bot"
        TWILIO = "twilio", "SMS (Twilio)"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    config = models.JSONField(
        default=dict, blank=True, help_text="Settings of the kind (see the table below the form)"
    )
    enabled = models.BooleanField(default=True)
    rate_limit = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1)],
        help_text="at most this many messages a minute; more wait for the next minute",
    )
    # Set when a delivery met a permanent error (401/403/404/410): the
    # destination is gone or refuses us, and retrying cannot help.
    flagged_at = models.DateTimeField(null=True, blank=True, editable=False)
    flagged_reason = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    """A person who can be paged."""

    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    phone = models.CharField(
        max_length=20,
        blank=True,
        validators=[validate_e164],
        help_text="E.164, e.g. +14155550123 (for SMS)",
    )
    chat_handle = models.CharField(
        max_length=100, blank=True, help_text="mentioned in chat messages, e.g. @alice"
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="contact",
        help_text="the login of this person, for the on-call console",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ContactRule(models.Model):
    """How a contact wants to be reached when paged: e.g. email at once, SMS after 5 minutes."""

    class Method(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="rules")
    method = models.CharField(max_length=10, choices=Method.choices)
    delay_minutes = models.PositiveIntegerField(
        default=0, help_text="after the page, if it is still unacknowledged"
    )

    class Meta:
        ordering = ["contact", "delay_minutes", "method"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "method", "delay_minutes"], name="contactrule_unique"
            )
        ]

    def __str__(self) -> str:
        when = "at once" if not self.delay_minutes else f"after {self.delay_minutes} min"
        return f"{self.get_method_display()} {when}"


class OnCallSchedule(models.Model):
    name = models.CharField(max_length=200, unique=True)
    timezone = models.CharField(
        max_length=64, validators=[validate_timezone], default="UTC",
        help_text="hand-off times are in this timezone",
    )  # fmt: skip
    # The iCal feed is public to whoever has its URL (calendar apps cannot log in).
    feed_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ScheduleLayer(models.Model):
    """One rotation of a schedule: primary (level 1), secondary (2), tertiary (3)."""

    class Shift(models.TextChoices):
        DAILY = "daily", "daily"
        WEEKLY = "weekly", "weekly"
        CUSTOM = "custom", "custom hours"

    schedule = models.ForeignKey(OnCallSchedule, on_delete=models.CASCADE, related_name="layers")
    level = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(9)],
        help_text="1 primary, 2 secondary, 3 tertiary",
    )
    shift = models.CharField(max_length=10, choices=Shift.choices, default=Shift.WEEKLY)
    shift_hours = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="length of a shift, for custom hours",
    )  # fmt: skip
    start_date = models.DateField(
        default=timezone.localdate, help_text="the first participant's first shift starts this day"
    )
    handoff_time = models.TimeField(default=time(9, 0), help_text="in the schedule's timezone")

    class Meta:
        ordering = ["schedule", "level"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "level"], name="schedulelayer_unique")
        ]

    def __str__(self) -> str:
        names = {1: "primary", 2: "secondary", 3: "tertiary"}
        return f"{self.schedule.name} · {names.get(self.level, f'level {self.level}')}"


class LayerMember(models.Model):
    """A participant of a rotation, in turn order."""

    layer = models.ForeignKey(ScheduleLayer, on_delete=models.CASCADE, related_name="members")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["layer", "position", "id"]

    def __str__(self) -> str:
        return f"{self.position + 1}. {self.contact}"


class ScheduleOverride(models.Model):
    """Someone covers a window of a layer, e.g. a swap or a holiday."""

    layer = models.ForeignKey(ScheduleLayer, on_delete=models.CASCADE, related_name="overrides")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")),
                name="scheduleoverride_ends_after_start",
                violation_error_message="the override must end after it starts",
            )
        ]

    def __str__(self) -> str:
        return f"{self.contact} covers {self.layer} from {self.starts_at:%Y-%m-%d %H:%M}"


class EscalationPolicy(models.Model):
    name = models.CharField(max_length=200, unique=True)
    default_for = models.CharField(
        max_length=10,
        choices=Monitor.Severity.choices,
        blank=True,
        help_text="incidents of this severity use this policy unless their monitor names another",
    )
    repeat = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="run the whole policy up to this many times while unacknowledged",
    )
    repeat_after_minutes = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1)],
        help_text="when the last step has run unacknowledged, start again after N minutes",
    )
    reminder_minutes = models.PositiveIntegerField(
        default=0, help_text="after the last step, remind every N minutes (0: no reminders)"
    )
    notify_on_acknowledge = models.BooleanField(
        default=True, help_text="tell everyone already paged who acknowledged"
    )
    notify_on_resolve = models.BooleanField(
        default=True, help_text="tell everyone already paged that it is resolved"
    )
    monitors = models.ManyToManyField(
        Monitor,
        blank=True,
        related_name="escalation_policies",
        help_text="monitors that use this policy whatever their severity",
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "escalation policies"
        constraints = [
            models.UniqueConstraint(
                fields=["default_for"],
                condition=~Q(default_for=""),
                name="escalationpolicy_one_default_per_severity",
                violation_error_message="another policy is already the default for this severity",
            )
        ]

    def __str__(self) -> str:
        return self.name


class EscalationStep(models.Model):
    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(default=0)
    delay_minutes = models.PositiveIntegerField(
        default=0, help_text="after the previous step (the first: after the incident opens)"
    )
    contacts = models.ManyToManyField(Contact, blank=True, related_name="+")
    layers = models.ManyToManyField(
        ScheduleLayer, blank=True, related_name="+", help_text="whoever is on call in these layers"
    )
    channels = models.ManyToManyField(Channel, blank=True, related_name="+")

    class Meta:
        ordering = ["policy", "position", "id"]

    def __str__(self) -> str:
        return f"step {self.position + 1} after {self.delay_minutes} min"


class NotificationQuerySet(models.QuerySet["Notification"]):
    def deliverable(self, now: timezone.datetime) -> NotificationQuerySet:
        return self.filter(
            status__in=[Notification.Status.PENDING, Notification.Status.RETRY],
            not_before__lte=now,
        )


class Notification(models.Model):
    """One message to one address, written before it is sent.

    `key` is unique: whatever runs twice (a step, a delivery task, a retry),
    the row is created once and sent once.
    """

    class Event(models.TextChoices):
        TRIGGER = "trigger", "paged"
        REMINDER = "reminder", "reminder"
        ACKNOWLEDGED = "acknowledged", "acknowledged"
        RESOLVED = "resolved", "resolved"
        GROUPED = "grouped", "grouped (incident storm)"
        TEST = "test", "test"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        RETRY = "retry", "waiting to retry"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    key = models.CharField(max_length=200, unique=True)
    incident = models.ForeignKey(
        "incidents.Incident",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    event = models.CharField(max_length=15, choices=Event.choices)
    # Exactly one of channel / contact: the transport is the channel's kind,
    # or the contact rule's method.
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    transport = models.CharField(max_length=20)
    address = models.CharField(max_length=500, blank=True, help_text="email address or phone")
    message = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Delivery waits until then: a personal rule's delay, a retry's backoff,
    # or the channel's rate limit.
    not_before = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The delivery sweep: rows waiting for their time.
            models.Index(
                fields=["not_before"],
                name="notification_waiting_idx",
                condition=Q(status__in=["pending", "retry"]),
            ),
            models.Index(fields=["channel", "sent_at"], name="notification_channel_sent_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(channel__isnull=True) | Q(contact__isnull=True),
                name="notification_one_destination",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_event_display()} via {self.transport} to {self.destination}"

    @property
    def destination(self) -> str:
        if self.channel_id:
            return self.channel.name
        if self.contact_id:
            return f"{self.contact.name} <{self.address}>"
        return self.address


class DeliveryAttempt(models.Model):
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="delivery_attempts"
    )
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    ok = models.BooleanField()
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["notification", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "number"], name="deliveryattempt_unique"
            )
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {'ok' if self.ok else self.error}"
