"""What Watchpost probes, what it saw, and what it concluded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

MIN_INTERVAL = 10


class Region(models.Model):
    """A place probes run from; workers started with `-Q <queue>` serve it."""

    name = models.SlugField(max_length=50, unique=True)
    queue = models.CharField(
        max_length=100,
        unique=True,
        help_text="Celery queue this region's workers consume, e.g. probes.eu",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.queue != "probes" and not self.queue.startswith("probes."):
            raise ValidationError({"queue": "must be 'probes' or start with 'probes.'"})

    @classmethod
    def default(cls) -> Region:
        region, _ = cls.objects.get_or_create(name="default", defaults={"queue": "probes"})
        return region


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MonitorQuerySet(models.QuerySet["Monitor"]):
    def active(self) -> MonitorQuerySet:
        return self.filter(paused=False)

    def scheduled(self) -> MonitorQuerySet:
        """Monitors the dispatcher probes (push monitors wait for pings instead)."""
        return self.active().exclude(kind__in=[Monitor.Kind.HEARTBEAT, Monitor.Kind.INTERNAL])

    def due(self, horizon: datetime) -> MonitorQuerySet:
        return self.scheduled().filter(next_check_at__lte=horizon)


class Monitor(models.Model):
    class Kind(models.TextChoices):
        HTTP = "http", "HTTP(S)"
        TCP = "tcp", "TCP port"
        DNS = "dns", "DNS"
        TLS = "tls", "TLS certificate"
        POSTGRES = "postgres", "PostgreSQL"
        REDIS = "redis", "Redis"
        PROMETHEUS = "prometheus", "Prometheus metric"
        WEBSOCKET = "websocket", "WebSocket"
        HEARTBEAT = "heartbeat", "Heartbeat (push)"
        INTERNAL = "internal", "Watchpost itself"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        UP = "up", "up"
        DEGRADED = "degraded", "degraded"
        DOWN = "down", "down"
        PAUSED = "paused", "paused"

    class Severity(models.TextChoices):
        CRITICAL = "critical", "critical"
        HIGH = "high", "high"
        MEDIUM = "medium", "medium"
        LOW = "low", "low"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.HTTP)
    target = models.CharField(
        max_length=2000,
        blank=True,
        help_text="URL, host:port, DSN or host name, depending on the kind",
    )
    options = models.JSONField(default=dict, blank=True, help_text="Options of the kind")
    interval = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(MIN_INTERVAL)], help_text="seconds"
    )
    timeout = models.FloatField(
        default=10.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(120)],
        help_text="seconds; the whole probe must finish within it",
    )
    failure_threshold = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="consecutive bad results before the monitor is degraded or down",
    )
    recovery_threshold = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="consecutive good results before it is up again",
    )
    paused = models.BooleanField(default=False)
    tags = models.ManyToManyField(Tag, blank=True, related_name="monitors")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.HIGH)
    description = models.TextField(blank=True)
    runbook_url = models.URLField(max_length=500, blank=True)
    depends_on = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="dependents",
        help_text="while this parent is down, this monitor's failures page no one",
    )
    regions = models.ManyToManyField(Region, blank=True, related_name="monitors")
    confirm_regions = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="how many regions must see it failing before it is down",
    )
    ping_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Heartbeat monitors only, written by the sweep (checks.heartbeats), never by forms.
    last_ping_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="when the job last reported it finished (success, failure or exit code)",
    )
    last_start_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="when the job last reported it started"
    )

    next_check_at = models.DateTimeField(null=True, blank=True, editable=False)

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, editable=False
    )
    status_since = models.DateTimeField(default=timezone.now, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_latency_ms = models.FloatField(null=True, blank=True, editable=False)
    last_reason = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MonitorQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [
            # The dispatcher's query: due monitors that are not paused.
            models.Index(
                fields=["next_check_at"],
                name="monitor_due_idx",
                condition=Q(paused=False),
            ),
            models.Index(fields=["status"], name="monitor_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(interval__gte=MIN_INTERVAL), name="monitor_interval_min"
            ),
            models.CheckConstraint(
                condition=~Q(depends_on=models.F("id")), name="monitor_not_own_parent"
            ),
            # Every worker's heartbeat thread looks the fleet's own monitor up
            # with get_or_create at once when the fleet starts: one wins.
            models.UniqueConstraint(
                fields=["name"], condition=Q(kind="internal"), name="monitor_internal_once"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        stored = getattr(self, "_stored_interval", None)
        if self.pk is not None and stored is not None and stored != self.interval:
            # A new interval is a new grid: the dispatcher places the next slot
            # within one new interval, instead of waiting out the old one.
            self.next_check_at = None
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "next_check_at"}
        super().save(*args, **kwargs)
        self._stored_interval = self.interval

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Monitor:
        instance = super().from_db(db, field_names, values)
        instance._stored_interval = instance.__dict__.get("interval")
        return instance

    def clean(self) -> None:
        from checks.probes import validate_monitor

        errors: dict[str, list[str]] = {}
        if self.kind == Monitor.Kind.INTERNAL and self.pk is None:
            errors["kind"] = ["only Watchpost creates monitors of itself; pick another kind"]
        if self.timeout and self.interval and self.timeout >= self.interval:
            errors.setdefault("timeout", []).append(
                f"must be shorter than the interval ({self.interval} s)"
            )
        if self.depends_on_id is not None and self.pk is not None:
            parent = self.depends_on
            seen = {self.pk}
            while parent is not None:
                if parent.pk in seen:
                    errors.setdefault("depends_on", []).append("would make a dependency loop")
                    break
                seen.add(parent.pk)
                parent = parent.depends_on
        try:
            self.target, self.options = validate_monitor(self.kind, self.target, self.options)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors.setdefault(field, []).extend(messages)
        if errors:
            raise ValidationError(errors)


def next_slot(monitor_id: int, interval: int, moment: datetime) -> datetime:
    """The first slot of this monitor strictly after `moment`, on its fixed grid.

    A hash of the id places each monitor's slots at its own phase within the
    interval, so a thousand monitors created at once do not fire in the same
    second, and a monitor that missed slots (Watchpost was down) comes back on
    the same grid instead of drifting.
    """
    phase = ((monitor_id * 2654435761) % (interval * 1000)) / 1000.0
    epoch = moment.timestamp()
    cycles = (epoch - phase) // interval + 1
    return datetime.fromtimestamp(cycles * interval + phase, tz=UTC)


class Assertion(models.Model):
    """One threshold of a monitor: a source, an operator, and warning / critical values."""

    class Source(models.TextChoices):
        STATUS_CODE = "status_code", "HTTP status code"
        LATENCY = "latency", "latency (ms)"
        BODY = "body", "response body"
        JSON_PATH = "json_path", "JSON path"
        HEADER = "header", "response header"
        CERT_DAYS = "cert_days", "certificate days left"
        METRIC = "metric", "metric value"
        CONNECTION_PCT = "connection_pct", "connections used (%)"
        MEMORY_PCT = "memory_pct", "memory used (%)"
        CLIENTS = "clients", "connected clients"
        QUERY_VALUE = "query_value", "query value"
        DNS_ANSWER = "dns_answer", "DNS answers"
        REPLY = "reply", "reply message"

    class Operator(models.TextChoices):
        EQ = "eq", "equals"
        NE = "ne", "does not equal"
        LT = "lt", "<"
        LE = "le", "≤"
        GT = "gt", ">"
        GE = "ge", "≥"
        CONTAINS = "contains", "contains"
        NOT_CONTAINS = "not_contains", "does not contain"
        MATCHES = "matches", "matches regex"
        IN = "in", "is one of"

    class Aggregate(models.TextChoices):
        LAST = "last", "this result"
        P50 = "p50", "p50 over the window"
        P95 = "p95", "p95 over the window"
        P99 = "p99", "p99 over the window"
        AVG = "avg", "average over the window"
        MAX = "max", "max over the window"
        HELD = "held", "held for the whole window"

    monitor = models.ForeignKey(Monitor, on_delete=models.CASCADE, related_name="assertions")
    order = models.PositiveSmallIntegerField(default=0)
    source = models.CharField(max_length=20, choices=Source.choices)
    selector = models.CharField(
        max_length=500,
        blank=True,
        help_text="JSON path ($.database), header name, or metric selector, by source",
    )
    operator = models.CharField(max_length=15, choices=Operator.choices)
    warning_value = models.CharField(max_length=500, blank=True)
    critical_value = models.CharField(max_length=500, blank=True)
    aggregate = models.CharField(max_length=5, choices=Aggregate.choices, default=Aggregate.LAST)
    window = models.PositiveIntegerField(
        null=True, blank=True, help_text="seconds, for window aggregates"
    )

    class Meta:
        ordering = ["monitor", "order", "id"]

    def __str__(self) -> str:
        return f"{self.get_source_display()} {self.selector} {self.get_operator_display()}".strip()

    def clean(self) -> None:
        from checks.assertions import validate_assertion

        validate_assertion(self)

    def as_rule(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "source": self.source,
            "selector": self.selector,
            "operator": self.operator,
            "warning": self.warning_value,
            "critical": self.critical_value,
            "aggregate": self.aggregate,
            "window": self.window,
        }


class Outcome(models.TextChoices):
    OK = "ok", "ok"
    WARNING = "warning", "warning"
    CRITICAL = "critical", "critical"
    ERROR = "error", "error"


class ProbeResult(models.Model):
    """One probe of one monitor from one region, at one scheduled slot."""

    # No single-column indexes on the keys: the unique constraint's index starts
    # with monitor_id, and the rows are too many to index a region a handful have.
    monitor = models.ForeignKey(
        Monitor, on_delete=models.CASCADE, related_name="results", db_index=False
    )
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="+", db_index=False)
    scheduled_at = models.DateTimeField()
    started_at = models.DateTimeField()
    duration_ms = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    reason = models.TextField(blank=True)
    details = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-scheduled_at"]
        constraints = [
            # A redelivered batch writes nothing twice.
            models.UniqueConstraint(
                fields=["monitor", "region", "scheduled_at"], name="result_once_per_slot"
            )
        ]
        indexes = [
            models.Index(fields=["monitor", "-scheduled_at"], name="result_latest_idx"),
            models.Index(fields=["scheduled_at"], name="result_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.monitor_id} {self.scheduled_at:%H:%M:%S} {self.outcome}"


class RegionState(models.Model):
    """A monitor's state as seen from one region; the monitor's status combines them."""

    monitor = models.ForeignKey(Monitor, on_delete=models.CASCADE, related_name="region_states")
    region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(
        max_length=10, choices=Monitor.Status.choices, default=Monitor.Status.PENDING
    )
    ok_streak = models.PositiveIntegerField(default=0)
    bad_streak = models.PositiveIntegerField(default=0)
    critical_streak = models.PositiveIntegerField(default=0)
    last_scheduled_at = models.DateTimeField(null=True, blank=True)
    last_reason = models.TextField(blank=True)
    # What a probe remembers between runs from this region (a scraped
    # counter's last value, to compute its increase).
    memory = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["monitor", "region"], name="regionstate_unique")
        ]

    def __str__(self) -> str:
        return f"{self.monitor_id}@{self.region_id}: {self.status}"


class StatusChangeQuerySet(models.QuerySet["StatusChange"]):
    def unprocessed(self) -> StatusChangeQuerySet:
        return self.filter(processed_at__isnull=True)


class StatusChange(models.Model):
    """A monitor's status flipped; the incidents app consumes these rows."""

    monitor = models.ForeignKey(Monitor, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=10, choices=Monitor.Status.choices)
    to_status = models.CharField(max_length=10, choices=Monitor.Status.choices)
    reason = models.TextField(blank=True)
    result = models.ForeignKey(
        ProbeResult, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = StatusChangeQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="statuschange_unprocessed_idx",
                condition=Q(processed_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.monitor_id}: {self.from_status} → {self.to_status}"


PING_BODY_LIMIT = 10 * 1024
PING_USER_AGENT_LIMIT = 200


class PingQuerySet(models.QuerySet["Ping"]):
    def unprocessed(self) -> PingQuerySet:
        return self.filter(processed_at__isnull=True)


class Ping(models.Model):
    """One request a job made to its heartbeat monitor's ping URL.

    The ping view only inserts these rows; the heartbeat sweep claims them
    (sets processed_at) and turns them into results and monitor state.
    """

    class Kind(models.TextChoices):
        SUCCESS = "success", "success"
        START = "start", "start"
        FAIL = "fail", "failure"
        EXIT_CODE = "exit_code", "exit code"

    monitor = models.ForeignKey(Monitor, on_delete=models.CASCADE, related_name="pings")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    exit_code = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(255)]
    )
    received_at = models.DateTimeField()
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=PING_USER_AGENT_LIMIT, blank=True)
    method = models.CharField(max_length=10)
    body = models.TextField(blank=True, help_text="the first 10 KB of a POST body")
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = PingQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # The sweep's query: pings not yet turned into results, oldest first.
            models.Index(
                fields=["received_at"],
                name="ping_unprocessed_idx",
                condition=Q(processed_at__isnull=True),
            ),
            models.Index(fields=["monitor", "-received_at"], name="ping_latest_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(exit_code__isnull=True) | Q(exit_code__lte=255),
                name="ping_exit_code_range",
            ),
        ]

    def __str__(self) -> str:
        code = f" ({self.exit_code})" if self.exit_code is not None else ""
        return f"{self.monitor_id} {self.kind}{code} at {self.received_at:%Y-%m-%d %H:%M:%S}"

    @property
    def failed(self) -> bool:
        return self.kind == self.Kind.FAIL or bool(self.exit_code)


class Rollup(models.Model):
    """A monitor's results folded into one hour or one day (in TIME_ZONE)."""

    class Period(models.TextChoices):
        HOUR = "hour", "hour"
        DAY = "day", "day"

    monitor = models.ForeignKey(Monitor, on_delete=models.CASCADE, related_name="rollups")
    period = models.CharField(max_length=4, choices=Period.choices)
    bucket_start = models.DateTimeField()
    total = models.PositiveIntegerField(default=0)
    ok = models.PositiveIntegerField(default=0)
    warning = models.PositiveIntegerField(default=0)
    failing = models.PositiveIntegerField(default=0, help_text="critical and error results")
    latency_p50 = models.FloatField(null=True, blank=True)
    latency_p95 = models.FloatField(null=True, blank=True)
    latency_max = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["monitor", "period", "-bucket_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["monitor", "period", "bucket_start"], name="rollup_once_per_bucket"
            )
        ]
        indexes = [models.Index(fields=["period", "bucket_start"], name="rollup_time_idx")]

    def __str__(self) -> str:
        return f"{self.monitor_id} {self.period} {self.bucket_start:%Y-%m-%d %H:%M}"

    @property
    def uptime_pct(self) -> float | None:
        """Share of results that were not failing (warnings count as up)."""
        if not self.total:
            return None
        return 100.0 * (self.ok + self.warning) / self.total
