"""The admin: monitors with their thresholds and recent results, regions, tags, state flips."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AdminURLFieldWidget
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.html import format_html

from checks.models import Assertion, Monitor, Outcome, Region, StatusChange, Tag
from checks.probes.docs import all_kind_help
from checks.services import MANUAL_RUN_LIMIT, ManualRun, evaluate_now, set_paused
from monitorsite.env import redact_url
from monitorsite.forms import PrettyJSONField

OUTCOME_LEVELS = {
    Outcome.OK: messages.SUCCESS,
    Outcome.WARNING: messages.WARNING,
    Outcome.CRITICAL: messages.ERROR,
    Outcome.ERROR: messages.ERROR,
}
RECENT_RESULTS = 20
TARGET_SHOWN = 60
REASON_SHOWN = 90


def status_badge(status: str, label: str) -> str:
    return format_html('<span class="wp-badge wp-badge-{}">{}</span>', status, label)


def describe_run(result: ManualRun) -> str:
    return f"{result.monitor.name}: {result.outcome} — {result.reason or 'no reason given'}"


def shown_target(target: str) -> str:
    """The target without a password (DSNs and URLs may carry one)."""
    try:
        return redact_url(target)
    except ValueError:
        return target


# --- The monitor form ---------------------------------------------------------------------


class OptionsWidget(forms.Textarea):
    """The options box with each kind's help beside it; the JS shows the chosen kind's."""

    template_name = "admin/checks/monitor/options_widget.html"

    class Media:
        js = ["checks/monitor_options.js"]

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"rows": 10, "cols": 80, "class": "vLargeTextField", **(attrs or {})})
        self.kind = Monitor.Kind.HTTP.value
        self.kind_field_id = "id_kind"

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"].update(
            kinds=all_kind_help(), current_kind=self.kind, kind_field_id=self.kind_field_id
        )
        return context


class MonitorForm(forms.ModelForm):
    # A runbook typed without a scheme is an https:// link (Django 6's default).
    runbook_url = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        label="Runbook URL",
        widget=AdminURLFieldWidget,
    )

    class Meta:
        model = Monitor
        fields = [
            "name", "kind", "target", "options", "description", "tags", "interval", "timeout",
            "failure_threshold", "recovery_threshold", "severity", "runbook_url", "depends_on",
            "regions", "confirm_regions",
        ]  # fmt: skip
        field_classes = {"options": PrettyJSONField}
        widgets = {"options": OptionsWidget}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.fields.get("options")
        if options is not None and "kind" in self.fields:
            options.widget.kind = self["kind"].value()
            options.widget.kind_field_id = self["kind"].auto_id


class AssertionInline(admin.TabularInline):
    model = Assertion
    fields = [
        "order", "source", "selector", "operator", "warning_value", "critical_value",
        "aggregate", "window",
    ]  # fmt: skip
    ordering = ["order", "id"]
    extra = 0
    # The values are short (a number, a path); 500-character boxes crowd the row.
    formfield_overrides = {models.CharField: {"widget": forms.TextInput(attrs={"size": 16})}}


# --- Monitors ------------------------------------------------------------------------------


@admin.register(Monitor)
class MonitorAdmin(admin.ModelAdmin):
    form = MonitorForm
    inlines = [AssertionInline]
    list_display = [
        "name", "status_badge", "short_reason", "kind", "short_target", "last_latency",
        "last_checked", "severity",
    ]  # fmt: skip
    list_filter = ["status", "kind", "tags", "severity", "paused"]
    search_fields = ["name", "target", "description"]
    actions = ["pause", "resume", "run_now"]
    autocomplete_fields = ["depends_on", "tags"]
    filter_horizontal = ["regions"]
    fieldsets = [
        ("What", {"fields": ["name", "kind", "target", "options", "description", "tags"]}),
        (
            "Schedule & thresholds",
            {"fields": ["interval", "timeout", "failure_threshold", "recovery_threshold"]},
        ),
        ("Alerting", {"fields": ["severity", "runbook_url", "depends_on"]}),
        ("Regions", {"fields": ["regions", "confirm_regions"]}),
    ]
    state_fieldset = (
        "State",
        {
            "fields": [
                "status_badge", "paused", "status_since", "last_checked", "last_latency",
                "last_reason", "ping_key",
            ],
            "description": "Written by the workers. Pause and resume from the monitor list.",
        },
    )  # fmt: skip
    readonly_fields = state_fieldset[1]["fields"]

    class Media:
        css = {"all": ["checks/admin.css"]}

    def get_fieldsets(self, request: HttpRequest, obj: Monitor | None = None) -> Any:
        return [*self.fieldsets, self.state_fieldset] if obj is not None else self.fieldsets

    # The list's columns.

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Monitor) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="target", ordering="target")
    def short_target(self, obj: Monitor) -> str:
        full = shown_target(obj.target)
        short = full if len(full) <= TARGET_SHOWN else f"{full[: TARGET_SHOWN - 1]}…"
        return format_html('<span title="{}">{}</span>', full, short)

    @admin.display(description="why")
    def short_reason(self, obj: Monitor) -> str:
        reason = obj.last_reason
        short = reason if len(reason) <= REASON_SHOWN else f"{reason[: REASON_SHOWN - 1]}…"
        return format_html('<span title="{}">{}</span>', reason, short)

    @admin.display(description="last latency", ordering="last_latency_ms")
    def last_latency(self, obj: Monitor) -> str:
        return "—" if obj.last_latency_ms is None else f"{obj.last_latency_ms:.0f} ms"

    @admin.display(description="last checked", ordering="last_checked_at")
    def last_checked(self, obj: Monitor) -> str:
        if obj.last_checked_at is None:
            return "never"
        return format_html(
            '<span title="{}">{}</span>',
            obj.last_checked_at.isoformat(),
            naturaltime(obj.last_checked_at),
        )

    # Saving.

    def save_model(self, request: HttpRequest, obj: Monitor, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        # Only what the form edits: status and the last result belong to the
        # workers, which may have written them since this request read the row.
        # `paused` changes only through set_paused (the actions), which records it.
        editable = [
            field.name
            for field in Monitor._meta.concrete_fields
            if field.editable and not field.primary_key and field.name != "paused"
        ]
        obj.save(update_fields=[*editable, "updated_at"])

    # Actions.

    @admin.action(description="Pause selected monitors", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Monitor]) -> None:
        changed = set_paused(list(queryset.values_list("id", flat=True)), True)
        self.message_user(request, f"Paused {changed} monitor(s).", messages.SUCCESS)

    @admin.action(description="Resume selected monitors", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Monitor]) -> None:
        changed = set_paused(list(queryset.values_list("id", flat=True)), False)
        self.message_user(request, f"Resumed {changed} monitor(s).", messages.SUCCESS)

    @admin.action(description="Run now (probe and judge, store nothing)", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Monitor]) -> None:
        monitors = list(queryset.prefetch_related("assertions")[: MANUAL_RUN_LIMIT + 1])
        if len(monitors) > MANUAL_RUN_LIMIT:
            self.message_user(
                request,
                f"Select at most {MANUAL_RUN_LIMIT} monitors to run at once.",
                messages.ERROR,
            )
            return
        for result in evaluate_now(monitors):
            self.message_user(request, describe_run(result), OUTCOME_LEVELS[result.outcome])

    # The change page: a "Run now" button and the latest results.

    def get_urls(self) -> list[URLPattern | URLResolver]:
        run = path(
            "<path:object_id>/run/",
            self.admin_site.admin_view(self.run_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_run",
        )
        # Before the defaults: their "<object_id>/" catch-all would take it.
        return [run, *super().get_urls()]

    def run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        monitor = self.get_object(request, unquote(object_id))
        if monitor is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, monitor):
            raise PermissionDenied
        if request.method == "POST":
            # A GET only asks: link checkers and prefetchers must not probe.
            [result] = evaluate_now([monitor])
            self.message_user(request, describe_run(result), OUTCOME_LEVELS[result.outcome])
            return redirect(reverse("admin:checks_monitor_change", args=[monitor.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": monitor,
            "title": f"Run “{monitor}” now?",
        }
        return TemplateResponse(request, "admin/checks/monitor/run_confirm.html", context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Monitor | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context["recent_results"] = obj.results.select_related("region").order_by(
                "-scheduled_at"
            )[:RECENT_RESULTS]
        return super().render_change_form(request, context, add, change, form_url, obj)


# --- Regions, tags, state changes --------------------------------------------------------------


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["name", "queue", "monitor_count"]
    search_fields = ["name", "queue"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Region]:
        return super().get_queryset(request).annotate(monitor_total=Count("monitors"))

    @admin.display(description="monitors", ordering="monitor_total")
    def monitor_count(self, obj: Any) -> int:
        return obj.monitor_total


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "monitor_count"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tag]:
        return super().get_queryset(request).annotate(monitor_total=Count("monitors"))

    @admin.display(description="monitors", ordering="monitor_total")
    def monitor_count(self, obj: Any) -> int:
        return obj.monitor_total


@admin.register(StatusChange)
class StatusChangeAdmin(admin.ModelAdmin):
    """What the workers concluded; the incidents app consumes these rows. Read-only."""

    list_display = ["monitor", "transition", "reason", "created_at", "processed_at"]
    list_filter = ["to_status", ("processed_at", admin.EmptyFieldListFilter)]
    list_select_related = ["monitor"]
    search_fields = ["monitor__name", "reason"]
    date_hierarchy = "created_at"

    class Media:
        css = {"all": ["checks/admin.css"]}

    @admin.display(description="from → to")
    def transition(self, obj: StatusChange) -> str:
        return format_html(
            "{} → {}",
            status_badge(obj.from_status, obj.get_from_status_display()),
            status_badge(obj.to_status, obj.get_to_status_display()),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
