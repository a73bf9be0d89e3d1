"""Admin: escalation policies and their ordered steps."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html_join

from alerts.models import EscalationPolicy, EscalationStep


class StepInline(admin.StackedInline):
    model = EscalationStep
    extra = 0
    fields = ["position", "delay_minutes", "contacts", "layers", "channels"]
    filter_horizontal = ["contacts", "layers", "channels"]
    verbose_name = "step"
    verbose_name_plural = "steps (each after its delay, in position order)"


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "default_for", "step_summary", "repeat", "reminder_minutes"]
    list_filter = ["default_for"]
    search_fields = ["name"]
    filter_horizontal = ["monitors"]
    inlines = [StepInline]
    fieldsets = [
        (None, {"fields": ["name", "default_for", "monitors"]}),
        (
            "Repeat and remind",
            {"fields": ["repeat", "repeat_after_minutes", "reminder_minutes"]},
        ),
        ("Follow-ups", {"fields": ["notify_on_acknowledge", "notify_on_resolve"]}),
    ]

    @admin.display(description="steps")
    def step_summary(self, obj: EscalationPolicy) -> str:
        steps = obj.steps.all()
        return format_html_join(
            " → ",
            "{}",
            (
                (f"+{step.delay_minutes} min" if step.delay_minutes else "at once",)
                for step in steps
            ),
        )
