"""Admin: channels, contacts, and the log of every notification and its delivery attempts."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Max, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from alerts import delivery
from alerts.models import Channel, Contact, ContactRule, DeliveryAttempt, Notification
from alerts.transports import TRANSPORTS
from alerts.transports.base import shorten
from monitorsite.forms import PrettyJSONField

# Tests are sent while the admin waits: a bounded number at once.
MAX_TESTS = 10
ERROR_SHOWN = 90


# --- Channels ----------------------------------------------------------------------------------


ConfigField = PrettyJSONField


class ChannelForm(forms.ModelForm):
    class Meta:
        model = Channel
        fields = ["name", "kind", "config", "enabled", "rate_limit"]
        field_classes = {"config": ConfigField}
        widgets = {
            "config": forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField"})
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind")
        if kind in TRANSPORTS and "config" not in self.errors:
            config = data.get("config")
            try:
                data["config"] = TRANSPORTS[kind].clean_config({} if config is None else config)
            except ValidationError as exc:
                self.add_error(None, exc)  # a {"config": [...]} error lands on the field
        return data


def kind_help() -> list[dict[str, Any]]:
    """Each kind's config keys, for the table below the form."""
    labels = dict(Channel.Kind.choices)
    return [
        {
            "kind": kind,
            "label": labels.get(kind, kind),
            "keys": transport.config_keys,
            "example": json.dumps(transport.example, indent=2, ensure_ascii=False),
        }
        for kind, transport in TRANSPORTS.items()
    ]


def report_test(request: HttpRequest, name: str, rows: list[Notification]) -> None:
    """One message per test row: sent, or the error as the service gave it."""
    if not rows:
        messages.warning(request, f"{name}: nothing to test (no email address or phone)")
    for row in rows:
        how = f"{name} via {row.transport}{f' ({row.address})' if row.address else ''}"
        if row.status == Notification.Status.SENT:
            messages.success(request, f"{how}: test notification sent")
        elif row.status == Notification.Status.CANCELLED:
            messages.warning(request, f"{how}: not sent: {row.last_error}")
        else:
            messages.error(request, f"{how}: test notification failed: {row.last_error}")


class FlaggedFilter(admin.SimpleListFilter):
    title = "flagged"
    parameter_name = "flagged"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "flagged"), ("no", "not flagged")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(flagged_at__isnull=self.value() == "no")
        return queryset


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "kind", "enabled", "rate_limit", "flag", "last_sent"]
    list_filter = [FlaggedFilter, "kind", "enabled"]
    search_fields = ["name"]
    actions = ["send_test", "clear_flag"]
    readonly_fields = ["flagged_at", "flagged_reason"]
    change_form_template = "alerts/admin/channel_change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Channel]:
        return super().get_queryset(request).annotate(last_sent_at=Max("notifications__sent_at"))

    def get_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = ["name", "kind", "config", "enabled", "rate_limit"]
        return [*fields, "flagged_at", "flagged_reason"] if obj and obj.flagged_at else fields

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        context["kind_help"] = kind_help()
        return super().render_change_form(request, context, *args, **kwargs)

    @admin.display(description="flag", ordering="flagged_at")
    def flag(self, obj: Channel) -> str:
        if obj.flagged_at is None:
            return "—"
        return format_html(
            '<strong style="color: #c62828;" title="since {}">flagged: {}</strong>',
            obj.flagged_at.isoformat(timespec="seconds"),
            shorten(obj.flagged_reason, ERROR_SHOWN),
        )

    @admin.display(description="last sent", ordering="last_sent_at")
    def last_sent(self, obj: Channel) -> Any:
        return getattr(obj, "last_sent_at", None) or "—"

    @admin.action(description="Send test notification")
    def send_test(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        if queryset.count() > MAX_TESTS:
            messages.error(request, f"Choose at most {MAX_TESTS} channels to test at once.")
            return
        for channel in queryset:
            report_test(request, channel.name, delivery.send_test(channel=channel))

    @admin.action(description="Clear flag")
    def clear_flag(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        cleared = queryset.exclude(flagged_at=None).update(flagged_at=None, flagged_reason="")
        messages.success(request, f"Cleared the flag of {cleared} channel(s).")


# --- Contacts ----------------------------------------------------------------------------------


class ContactRuleInline(admin.TabularInline):
    model = ContactRule
    extra = 0
    fields = ["method", "delay_minutes"]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    inlines = [ContactRuleInline]
    list_display = ["name", "email", "phone", "chat_handle", "rules_summary"]
    search_fields = ["name", "email", "phone", "chat_handle"]
    fields = ["name", "email", "phone", "chat_handle", "user"]
    raw_id_fields = ["user"]
    actions = ["send_test"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Contact]:
        return super().get_queryset(request).prefetch_related("rules")

    @admin.display(description="when paged")
    def rules_summary(self, obj: Contact) -> str:
        return ", ".join(str(rule) for rule in obj.rules.all()) or "—"

    @admin.action(description="Send test notification")
    def send_test(self, request: HttpRequest, queryset: QuerySet[Contact]) -> None:
        if queryset.count() > MAX_TESTS:
            messages.error(request, f"Choose at most {MAX_TESTS} contacts to test at once.")
            return
        for contact in queryset:
            report_test(request, contact.name, delivery.send_test(contact=contact))


# --- The notification log ----------------------------------------------------------------------


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "started_at", "duration", "ok", "error"]
    readonly_fields = fields
    verbose_name_plural = "delivery attempts"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="duration")
    def duration(self, obj: DeliveryAttempt) -> str:
        return f"{obj.duration_ms:.0f} ms"


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """A read-only log: rows are written by paging and by delivery, never by hand."""

    inlines = [DeliveryAttemptInline]
    list_display = [
        "created_at", "event", "transport", "destination_shown", "status", "attempts",
        "sent_at", "short_error",
    ]  # fmt: skip
    list_filter = ["status", "event", "transport"]
    search_fields = ["key", "address", "channel__name", "contact__name", "last_error"]
    list_select_related = ["channel", "contact"]
    date_hierarchy = "created_at"
    fields = [
        "key", "incident", "event", "channel", "contact", "transport", "address", "status",
        "not_before", "attempts", "sent_at", "last_error", "message_shown", "created_at",
    ]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="to")
    def destination_shown(self, obj: Notification) -> str:
        return obj.destination

    @admin.display(description="error")
    def short_error(self, obj: Notification) -> str:
        return format_html(
            '<span title="{}">{}</span>', obj.last_error, shorten(obj.last_error, ERROR_SHOWN)
        )

    @admin.display(description="message")
    def message_shown(self, obj: Notification) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.message, indent=2, ensure_ascii=False))
