"""Admin: on-call schedules, their layers (rotations) with members and overrides.

The admin has no nested inlines, so a schedule's page lists its layers and
each layer has a page of its own for its members and overrides. The schedule's
page shows who is on call now, the next four weeks and the iCal feed URL.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from alerts.models import LayerMember, OnCallSchedule, ScheduleLayer, ScheduleOverride
from alerts.oncall import Shift, level_name, on_call, on_call_level, schedule_zone, shifts

TABLE_AHEAD = timedelta(weeks=4)
SHOWN_TIME = "%a %d %b %Y, %H:%M"
NOBODY = "nobody"


def local_time(moment: datetime, zone: zoneinfo.ZoneInfo) -> str:
    return moment.astimezone(zone).strftime(SHOWN_TIME)


def feed_url(schedule: OnCallSchedule) -> str:
    return settings.SITE_URL + reverse("oncall-ical", args=[schedule.feed_key])


# --- Forms ------------------------------------------------------------------------------


class ScheduleLayerForm(forms.ModelForm):
    class Meta:
        model = ScheduleLayer
        fields = ["level", "shift", "shift_hours", "start_date", "handoff_time"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        shift, hours = data.get("shift"), data.get("shift_hours")
        if shift == ScheduleLayer.Shift.CUSTOM and not hours:
            self.add_error("shift_hours", "A custom shift needs its length in hours.")
        elif shift and shift != ScheduleLayer.Shift.CUSTOM and hours:
            # Saved, the hours would do nothing; say so rather than keep a silent value.
            self.add_error(
                "shift_hours", "Only custom shifts have a length in hours; leave this empty."
            )
        return data


class ScheduleOverrideForm(forms.ModelForm):
    class Meta:
        model = ScheduleOverride
        fields = ["contact", "starts_at", "ends_at", "note"]

    def clean(self) -> dict[str, Any]:
        # The check constraint holds this too; here it becomes an error beside
        # the field (with it, Django skips the constraint's form-wide message).
        data = super().clean()
        starts, ends = data.get("starts_at"), data.get("ends_at")
        if starts is not None and ends is not None and ends <= starts:
            self.add_error("ends_at", "The override must end after it starts.")
        return data


# --- Schedules --------------------------------------------------------------------------


class ScheduleLayerInline(admin.TabularInline):
    model = ScheduleLayer
    form = ScheduleLayerForm
    fields = ["level", "shift", "shift_hours", "start_date", "handoff_time", "member_names"]
    readonly_fields = ["member_names"]
    extra = 0
    show_change_link = True
    verbose_name_plural = "layers (members and overrides: “Change” on a layer)"

    def get_extra(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> int:
        return 1 if obj is None else 0  # a new schedule starts with its primary layer

    @admin.display(description="members in turn order")
    def member_names(self, layer: ScheduleLayer) -> str:
        if layer.pk is None:
            return "save, then add members on the layer's page"
        names = [member.contact.name for member in layer.members.select_related("contact")]
        return ", ".join(names) or "none yet"


@admin.register(OnCallSchedule)
class OnCallScheduleAdmin(admin.ModelAdmin):
    inlines = [ScheduleLayerInline]
    list_display = ["name", "timezone", "primary_now"]
    search_fields = ["name"]
    fieldsets = [(None, {"fields": ["name", "timezone"]})]
    oncall_fieldset = (
        "On call",
        {"fields": ["on_call_now", "next_four_weeks", "ical_feed"]},
    )
    readonly_fields = oncall_fieldset[1]["fields"]

    def get_fieldsets(self, request: HttpRequest, obj: OnCallSchedule | None = None) -> Any:
        return [*self.fieldsets, self.oncall_fieldset] if obj is not None else self.fieldsets

    @admin.display(description="on call now (primary)")
    def primary_now(self, schedule: OnCallSchedule) -> str:
        contact = on_call_level(schedule, 1, timezone.now())
        return contact.name if contact is not None else NOBODY

    @admin.display(description="on call now")
    def on_call_now(self, schedule: OnCallSchedule) -> SafeString | str:
        now = timezone.now()
        rows = [
            (level_name(layer.level), getattr(on_call(layer, now), "name", NOBODY))
            for layer in schedule.layers.select_related("schedule")
        ]
        if not rows:
            return "No layers yet: add a primary layer below."
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}: <strong>{}</strong></li>", rows)
        )

    @admin.display(description="next four weeks")
    def next_four_weeks(self, schedule: OnCallSchedule) -> SafeString | str:
        now, zone = timezone.now(), schedule_zone(schedule)
        layers = schedule.layers.select_related("schedule").prefetch_related("members__contact")
        tables = [
            layer_table(layer, shifts(layer, now, now + TABLE_AHEAD, clip=False), zone)
            for layer in layers
        ]
        if not tables:
            return "No layers yet."
        joined = format_html_join("", "{}", ((table,) for table in tables))
        return format_html("<p>Times in {}.</p>{}", schedule.timezone, joined)

    @admin.display(description="iCal feed")
    def ical_feed(self, schedule: OnCallSchedule) -> SafeString:
        url = feed_url(schedule)
        return format_html(
            '<a href="{}">{}</a><br><span class="help">Subscribe to it in a calendar app. '
            "Whoever has this URL can read the schedule.</span>",
            url,
            url,
        )


def layer_table(layer: ScheduleLayer, found: list[Shift], zone: zoneinfo.ZoneInfo) -> SafeString:
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                shift.contact.name,
                local_time(shift.starts_at, zone),
                local_time(shift.ends_at, zone),
                "override" if shift.is_override else "",
            )
            for shift in found
        ),
    )
    if not found:
        rows = format_html(
            '<tr><td colspan="4">{}</td></tr>', "nobody (no members, or the rotation starts later)"
        )
    return format_html(
        "<h3>{}</h3><table><thead><tr><th>who</th><th>from</th><th>to</th><th></th></tr>"
        "</thead><tbody>{}</tbody></table>",
        level_name(layer.level),
        rows,
    )


# --- Layers -----------------------------------------------------------------------------


class LayerMemberInline(admin.TabularInline):
    model = LayerMember
    fields = ["contact", "position"]
    extra = 1
    verbose_name = "member"
    verbose_name_plural = "members (turn order: the lowest position goes first)"


class ScheduleOverrideInline(admin.TabularInline):
    model = ScheduleOverride
    form = ScheduleOverrideForm
    fields = ["contact", "starts_at", "ends_at", "note"]
    extra = 0
    verbose_name_plural = "overrides (someone covers a window; the latest added wins)"


@admin.register(ScheduleLayer)
class ScheduleLayerAdmin(admin.ModelAdmin):
    form = ScheduleLayerForm
    inlines = [LayerMemberInline, ScheduleOverrideInline]
    list_display = ["__str__", "shift", "start_date", "handoff_time", "on_call_now"]
    list_select_related = ["schedule"]
    list_filter = ["schedule"]
    fields = ["schedule", "level", "shift", "shift_hours", "start_date", "handoff_time"]

    @admin.display(description="on call now")
    def on_call_now(self, layer: ScheduleLayer) -> str:
        return getattr(on_call(layer, timezone.now()), "name", NOBODY)

    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        # Override times are read in the schedule's timezone, unknown until the
        # layer is saved with its schedule: overrides come after that.
        inlines = super().get_inline_instances(request, obj)
        if obj is None:
            return [inline for inline in inlines if not isinstance(inline, ScheduleOverrideInline)]
        return inlines

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        layer = self.get_object(request, unquote(object_id)) if object_id else None
        if layer is None:
            return super().changeform_view(request, object_id, form_url, extra_context)
        # Overrides are typed and shown in the schedule's timezone, the one its
        # people think in. The page renders here, inside the override.
        subtitle = f"{layer} (times in {layer.schedule.timezone})"
        extra_context = {**(extra_context or {}), "subtitle": subtitle}
        with timezone.override(schedule_zone(layer.schedule)):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()
        return response
