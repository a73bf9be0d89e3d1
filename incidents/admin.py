"""The admin: incidents with their whole story, MTTA / MTTR, and maintenance windows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from alerts.models import Notification
from incidents import services

# Importing admin_status also registers the status page admins.
from incidents.admin_status import publish_on_status_page
from incidents.maintenance import window_at
from incidents.models import Incident, IncidentEvent, Maintenance

STATUS_BADGE = {"triggered": "down", "acknowledged": "degraded", "resolved": "up"}
REPORT_DAYS = 30


def badge(css: str, label: str) -> str:
    return format_html('<span class="wp-badge wp-badge-{}">{}</span>', css, label)


def human(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def mtta_mttr(incidents: QuerySet[Incident]) -> dict[str, Any]:
    """Mean time to acknowledge and to resolve, over incidents that reached each."""
    to_ack = ExpressionWrapper(F("acknowledged_at") - F("opened_at"), output_field=DurationField())
    to_resolve = ExpressionWrapper(F("resolved_at") - F("opened_at"), output_field=DurationField())
    return incidents.aggregate(
        count=Count("id"),
        mtta=Avg(to_ack, filter=Q(acknowledged_at__isnull=False)),
        mttr=Avg(to_resolve, filter=Q(resolved_at__isnull=False)),
    )


class TimelineInline(admin.TabularInline):
    model = IncidentEvent
    extra = 0
    can_delete = False
    fields = ["at", "kind", "actor", "message"]
    readonly_fields = fields
    verbose_name_plural = "timeline"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NotificationInline(admin.TabularInline):
    model = Notification
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "event",
        "transport",
        "address",
        "channel",
        "contact",
        "status",
        "attempts",
        "sent_at",
        "last_error",
    ]
    readonly_fields = fields
    verbose_name_plural = "notifications"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class IncidentForm(forms.ModelForm):
    """Adding an incident by hand declares one and pages by its severity."""

    class Meta:
        model = Incident
        fields = ["title", "severity", "reason"]


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = [
        "number",
        "title",
        "monitor",
        "severity_badge",
        "status_badge",
        "opened_at",
        "age",
        "acknowledged_by",
        "suppression",
    ]
    list_display_links = ["number", "title"]
    list_filter = ["status", "severity", "suppression", "opened_at"]
    search_fields = ["title", "reason", "monitor__name"]
    list_select_related = ["monitor"]
    date_hierarchy = "opened_at"
    inlines = [TimelineInline, NotificationInline]
    actions = ["acknowledge_selected", "resolve_selected", publish_on_status_page]
    change_form_template = "admin/incidents/incident/change_form.html"
    change_list_template = "admin/incidents/incident/change_list.html"

    class Media:
        css = {"all": ["checks/admin.css"]}

    # --- display ------------------------------------------------------------

    @admin.display(description="#", ordering="id")
    def number(self, obj: Incident) -> str:
        return f"#{obj.pk}"

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj: Incident) -> str:
        css = {"critical": "down", "high": "down", "medium": "degraded"}.get(
            obj.severity, "pending"
        )
        return badge(css, obj.get_severity_display())

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Incident) -> str:
        return badge(STATUS_BADGE[obj.status], obj.get_status_display())

    @admin.display(description="open for")
    def age(self, obj: Incident) -> str:
        return human((obj.resolved_at or timezone.now()) - obj.opened_at)

    # --- forms --------------------------------------------------------------

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = IncidentForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["title", "severity", "reason"]
        return [
            "title", "monitor", "severity", "status", "reason", "opened_at",
            "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by",
            "resolution_note", "suppression", "suppressed_by", "policy_name", "next_escalation_at",
        ]  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else self.get_fields(request, obj)

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        return [] if obj is None else self.inlines

    @admin.display(description="escalation policy (snapshot)")
    def policy_name(self, obj: Incident) -> str:
        if not obj.policy:
            return "—"
        steps, repeat = len(obj.policy["steps"]), obj.policy["repeat"]
        return f"{obj.policy['name']} ({steps} steps, run up to {repeat} times)"

    def save_model(self, request: HttpRequest, obj: Incident, form: Any, change: bool) -> None:
        if change:
            return  # incidents change only through their actions
        declared = services.open_manual_incident(
            obj.title, obj.severity, actor_of(request), obj.reason
        )
        obj.pk = declared.pk

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    # --- actions -------------------------------------------------------------

    @admin.action(description="Acknowledge selected incidents")
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        done = [
            services.acknowledge(pk, actor_of(request), via="admin")
            for pk in queryset.values_list("id", flat=True)
        ]
        count = sum(1 for incident in done if incident.acknowledged_by == actor_of(request))
        self.message_user(request, f"{count} incident(s) acknowledged.", messages.SUCCESS)

    @admin.action(description="Resolve selected incidents")
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        for pk in queryset.values_list("id", flat=True):
            services.resolve(pk, actor_of(request), via="admin")
        self.message_user(request, f"{queryset.count()} incident(s) resolved.", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern | URLResolver]:
        own = [
            path(
                "report/",
                self.admin_site.admin_view(self.report_view),
                name="incidents_incident_report",
            ),
            path(
                "<path:object_id>/act/",
                self.admin_site.admin_view(self.act_view),
                name="incidents_incident_act",
            ),
        ]
        return own + super().get_urls()

    def act_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The buttons on an incident's page: acknowledge, resolve, add a note."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        incident = self.get_object(request, unquote(object_id))
        if incident is None or not self.has_view_permission(request, incident):
            return redirect("admin:incidents_incident_changelist")
        action, actor = request.POST.get("action"), actor_of(request)
        text = request.POST.get("text", "").strip()
        try:
            if action == "acknowledge":
                services.acknowledge(incident.pk, actor, via="admin")
            elif action == "resolve":
                services.resolve(incident.pk, actor, note=text, via="admin")
            elif action == "note":
                services.add_note(incident.pk, actor, text)
            else:
                raise ValueError(f"unknown action {action!r}")
        except (ValueError, services.TransitionError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return redirect(reverse("admin:incidents_incident_change", args=[incident.pk]))

    def report_view(self, request: HttpRequest) -> HttpResponse:
        since = timezone.now() - timedelta(days=REPORT_DAYS)
        recent = Incident.objects.filter(opened_at__gte=since)
        overall = mtta_mttr(recent)
        rows = []
        for monitor_id, name in (
            recent.exclude(monitor=None).values_list("monitor_id", "monitor__name").distinct()
        ):
            figures = mtta_mttr(recent.filter(monitor_id=monitor_id))
            rows.append(
                {
                    "name": name,
                    "count": figures["count"],
                    "mtta": human(figures["mtta"]),
                    "mttr": human(figures["mttr"]),
                }
            )
        rows.sort(key=lambda row: (-row["count"], row["name"]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Incident response, last {REPORT_DAYS} days",
            "opts": self.model._meta,
            "overall": {
                "count": overall["count"],
                "mtta": human(overall["mtta"]),
                "mttr": human(overall["mttr"]),
            },
            "rows": rows,
        }
        return TemplateResponse(request, "admin/incidents/incident/report.html", context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        figures = mtta_mttr(
            Incident.objects.filter(opened_at__gte=timezone.now() - timedelta(days=REPORT_DAYS))
        )
        extra = {
            "mtta": human(figures["mtta"]),
            "mttr": human(figures["mttr"]),
            "report_days": REPORT_DAYS,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra)


def actor_of(request: HttpRequest) -> str:
    user = request.user
    return user.get_full_name() or user.get_username()


class MaintenanceForm(forms.ModelForm):
    weekdays = forms.TypedMultipleChoiceField(
        choices=[
            (0, "Mon"),
            (1, "Tue"),
            (2, "Wed"),
            (3, "Thu"),
            (4, "Fri"),
            (5, "Sat"),
            (6, "Sun"),
        ],
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="weekly windows: the days they start on",
    )

    class Meta:
        model = Maintenance
        fields = [
            "title", "recurrence", "starts_at", "ends_at", "weekdays", "start_time", "cron",
            "duration_minutes", "timezone", "monitors", "tags", "components", "public",
            "public_description",
        ]  # fmt: skip


@admin.register(Maintenance)
class MaintenanceAdmin(admin.ModelAdmin):
    form = MaintenanceForm
    list_display = ["title", "recurrence", "starts_at", "ends_at", "active_now"]
    list_filter = ["recurrence"]
    search_fields = ["title"]
    filter_horizontal = ["monitors", "tags", "components"]

    @admin.display(description="in effect now")
    def active_now(self, obj: Maintenance) -> str:
        window = window_at(obj, timezone.now())
        if window is None:
            return "—"
        return f"until {timezone.localtime(window.ends_at):%Y-%m-%d %H:%M}"

    def save_model(self, request: HttpRequest, obj: Maintenance, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
