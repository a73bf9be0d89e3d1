"""Admin: status pages, components, public incidents and subscribers.

A public incident changes through its updates: the change page has a form
that posts one (incidents.statuspage.publishing.post_update, which also
publishes a draft and tells subscribers). Monitors are chosen on a
component's own page, since inlines do not nest.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.http.request import split_domain_port, validate_host
from django.shortcuts import redirect
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from incidents.models import (
    Component,
    ComponentGroup,
    ComponentStatus,
    Incident,
    PublicIncident,
    PublicUpdate,
    StatusPage,
    Subscriber,
)
from incidents.statuspage.middleware import admin_hosts

DRAFT_SESSION_KEY = "status-update-draft"  # what was typed into a refused update


def actor_of(request: HttpRequest) -> str:
    user = request.user
    return user.get_full_name() or user.get_username()


def public_url(page: StatusPage) -> str:
    from incidents.statuspage.pages import page_url

    return page_url(page)


# --- Status pages ----------------------------------------------------------------------


class StatusPageForm(forms.ModelForm):
    logo_url = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text="https, shown at 32 px high",
    )
    support_url = forms.URLField(
        max_length=500, required=False, assume_scheme="https", help_text="“Contact support” link"
    )

    class Meta:
        model = StatusPage
        fields = [
            "title", "host", "description", "logo_url", "support_url", "timezone", "history_days",
        ]  # fmt: skip

    def clean_host(self) -> str:
        host = self.cleaned_data["host"].strip().lower()
        if host in admin_hosts():
            raise ValidationError(
                f"{host} is where this admin is served (SITE_URL): a status page there would "
                "hide the admin. Use a host of its own, such as status.example.com."
            )
        return host

    def clean_history_days(self) -> int:
        days = self.cleaned_data["history_days"]
        if not 1 <= days <= 90:
            raise ValidationError(f"history days: between 1 and 90, got {days}")
        return days


class ComponentGroupInline(admin.TabularInline):
    model = ComponentGroup
    extra = 0
    fields = ["name", "position"]


class ComponentInline(admin.TabularInline):
    model = Component
    extra = 0
    fields = [
        "name", "group", "position", "status_override", "show_uptime", "show_response_time",
        "auto_publish",
    ]  # fmt: skip
    show_change_link = True  # the component's own page chooses its monitors
    verbose_name_plural = "components (save, then open one to choose the monitors it follows)"

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "group":
            match = request.resolver_match
            page_id = match.kwargs.get("object_id") if match else None
            groups = ComponentGroup.objects.filter(page_id=page_id) if page_id else None
            kwargs["queryset"] = groups if groups is not None else ComponentGroup.objects.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(StatusPage)
class StatusPageAdmin(admin.ModelAdmin):
    form = StatusPageForm
    list_display = ["title", "host", "component_count", "view_link"]
    search_fields = ["title", "host"]
    readonly_fields = ["view_link"]
    inlines = [ComponentGroupInline, ComponentInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[StatusPage]:
        return super().get_queryset(request).annotate(component_total=Count("components"))

    @admin.display(description="components", ordering="component_total")
    def component_count(self, obj: StatusPage) -> int:
        return getattr(obj, "component_total", 0)

    @admin.display(description="public page")
    def view_link(self, obj: StatusPage) -> str:
        if not obj.pk:
            return "—"
        url = public_url(obj)
        return format_html('<a href="{}" target="_blank" rel="noopener">View page ↗</a>', url)

    def save_model(self, request: HttpRequest, obj: StatusPage, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        domain, _port = split_domain_port(obj.host)
        if not validate_host(domain, settings.ALLOWED_HOSTS):
            self.message_user(
                request,
                f"{obj.host} is not in ALLOWED_HOSTS, so requests for it are refused (HTTP 400). "
                f"Add it to the ALLOWED_HOSTS environment variable (or set STATUS_PAGE_HOST) "
                "and restart.",
                messages.WARNING,
            )


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    list_display = ["name", "page", "group", "position", "status_override", "monitor_count"]
    list_filter = ["page", "status_override"]
    list_select_related = ["page", "group"]
    search_fields = ["name", "page__title"]
    filter_horizontal = ["monitors"]
    fields = [
        "page", "group", "name", "description", "position", "monitors", "status_override",
        "auto_publish", "show_uptime", "show_response_time", "current_status",
    ]  # fmt: skip
    readonly_fields = ["current_status"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Component]:
        return super().get_queryset(request).annotate(monitor_total=Count("monitors"))

    @admin.display(description="monitors", ordering="monitor_total")
    def monitor_count(self, obj: Component) -> int:
        return getattr(obj, "monitor_total", 0)

    @admin.display(description="shown now")
    def current_status(self, obj: Component) -> str:
        if not obj.pk:
            return "—"
        from incidents.statuspage.derive import component_statuses

        return ComponentStatus(component_statuses([obj], timezone.now())[obj.pk]).label

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "group":
            match = request.resolver_match
            object_id = match.kwargs.get("object_id") if match else None
            component = Component.objects.filter(pk=object_id).first() if object_id else None
            if component is not None:
                kwargs["queryset"] = ComponentGroup.objects.filter(page_id=component.page_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Component, form: Any, change: bool) -> None:
        if obj.group_id and obj.group.page_id != obj.page_id:
            obj.group = None
            self.message_user(
                request, "group: it belongs to another page, so it was cleared", messages.WARNING
            )
        super().save_model(request, obj, form, change)


# --- Public incidents ----------------------------------------------------------------------


class PublicUpdateInline(admin.TabularInline):
    """The timeline. New updates come from the form above it, so subscribers hear of them."""

    model = PublicUpdate
    extra = 0
    fields = ["created_at", "status", "body", "author"]
    readonly_fields = ["created_at", "status", "author"]
    verbose_name_plural = "timeline (a body may be corrected here; post new updates above)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PublicIncidentForm(forms.ModelForm):
    first_status = forms.ChoiceField(
        label="status", choices=PublicIncident.Status.choices, required=False
    )
    first_message = forms.CharField(
        label="first update",
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        required=False,
        help_text="public; posting it publishes the incident. Leave empty to save a draft.",
    )

    class Meta:
        model = PublicIncident
        fields = ["page", "title", "impact", "components", "incident", "created_at"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        page, components = data.get("page"), data.get("components")
        if page is not None and components is not None:
            strangers = [c.name for c in components if c.page_id != page.pk]
            if strangers:
                self.add_error(
                    "components", f"not on {page.title}: {', '.join(strangers)}"
                )  # a component of another page would show there, not here
        return data


@admin.register(PublicIncident)
class PublicIncidentAdmin(admin.ModelAdmin):
    form = PublicIncidentForm
    list_display = ["title", "page", "impact", "status", "is_published", "created_at"]
    list_filter = ["page", "status", "impact", ("published_at", admin.EmptyFieldListFilter)]
    list_select_related = ["page"]
    search_fields = ["title"]
    date_hierarchy = "created_at"
    filter_horizontal = ["components"]
    raw_id_fields = ["incident"]
    inlines = [PublicUpdateInline]
    change_form_template = "incidents/status/admin_public_incident.html"

    @admin.display(description="published", boolean=True, ordering="published_at")
    def is_published(self, obj: PublicIncident) -> bool:
        return obj.is_published

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = ["page", "title", "impact", "components", "incident", "created_at"]
        if obj is None:
            return [*fields, "first_status", "first_message"]
        return [*fields, "status", "published_at", "resolved_at", "page_link"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The status moves with each update, and publishing is an act, not a field.
        return [] if obj is None else ["status", "published_at", "resolved_at", "page_link"]

    @admin.display(description="on the page")
    def page_link(self, obj: PublicIncident) -> str:
        if not obj.is_published:
            return "draft: not on the page"
        from incidents.statuspage.pages import incident_url

        url = incident_url(obj.page, obj.pk)
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        message = form.cleaned_data.get("first_message", "")
        if not change and message.strip():
            status = form.cleaned_data.get("first_status") or PublicIncident.Status.INVESTIGATING
            self.post(request, form.instance, status, message)

    def post(self, request: HttpRequest, incident: PublicIncident, status: str, body: str) -> bool:
        from incidents.statuspage.publishing import post_update

        try:
            post_update(incident, status, body, actor_of(request))
        except ValueError as exc:
            self.message_user(request, f"The update was not posted: {exc}", messages.ERROR)
            return False
        self.message_user(
            request,
            f"Update posted ({PublicIncident.Status(status).label}); it is on the status page.",
            messages.SUCCESS,
        )
        return True

    def get_urls(self) -> list[URLPattern | URLResolver]:
        own = [
            path(
                "<path:object_id>/post-update/",
                self.admin_site.admin_view(self.post_update_view),
                name="incidents_publicincident_post_update",
            ),
            path(
                "<path:object_id>/publish/",
                self.admin_site.admin_view(self.publish_view),
                name="incidents_publicincident_publish",
            ),
        ]
        return own + super().get_urls()

    def acted_on(self, request: HttpRequest, object_id: str) -> PublicIncident | None:
        found = self.get_object(request, unquote(object_id))
        if found is None or not self.has_change_permission(request, found):
            return None
        return found

    def post_update_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        found = self.acted_on(request, object_id)
        if found is None:
            return redirect("admin:incidents_publicincident_changelist")
        status, body = request.POST.get("status", ""), request.POST.get("body", "")
        if not self.post(request, found, status, body):
            # Keep what was typed: the change page puts it back into the form.
            request.session[DRAFT_SESSION_KEY] = {"id": found.pk, "status": status, "body": body}
        return redirect(reverse("admin:incidents_publicincident_change", args=[found.pk]))

    def publish_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        found = self.acted_on(request, object_id)
        if found is None:
            return redirect("admin:incidents_publicincident_changelist")
        from incidents.statuspage.publishing import publish

        publish(found, actor_of(request))
        self.message_user(request, "Published: it is on the status page.", messages.SUCCESS)
        return redirect(reverse("admin:incidents_publicincident_change", args=[found.pk]))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        draft = request.session.pop(DRAFT_SESSION_KEY, None) if request.method == "GET" else None
        if not draft or str(draft.get("id")) != str(unquote(object_id)):
            draft = {}
        extra = {
            "update_statuses": PublicIncident.Status.choices,
            "update_draft": draft,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)


@admin.action(description="Publish on the status page")
def publish_on_status_page(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Incident]
) -> HttpResponse | None:
    """A draft public incident per page whose components the incident's monitor feeds.

    The draft gets a public title built from component names, never the
    internal title or reason; the admin reviews it and posts the first update.
    """
    drafts = []
    for incident in queryset:
        drafts.extend(drafts_for(incident))
    if not drafts:
        modeladmin.message_user(
            request,
            "None of the selected incidents' monitors feed a status page component; "
            "add a public incident by hand instead.",
            messages.WARNING,
        )
        return None
    modeladmin.message_user(
        request,
        "Review the public title and post the first update to publish.",
        messages.INFO,
    )
    if len(drafts) == 1:
        return redirect(reverse("admin:incidents_publicincident_change", args=[drafts[0].pk]))
    ids = ",".join(str(d.pk) for d in drafts)
    return HttpResponseRedirect(
        reverse("admin:incidents_publicincident_changelist") + f"?id__in={ids}"
    )


def drafts_for(incident: Incident) -> list[PublicIncident]:
    from incidents.statuspage.autopublish import components_named

    if incident.monitor_id is None:
        return []
    by_page: dict[int, list[Component]] = defaultdict(list)
    components = Component.objects.filter(monitors=incident.monitor_id).order_by(
        "page_id", "position", "id"
    )
    for component in components:
        by_page[component.page_id].append(component)
    drafts = []
    for page_id, members in by_page.items():
        existing = PublicIncident.objects.filter(page_id=page_id, incident=incident).first()
        if existing is None:
            title = f"{components_named(members)} {'is' if len(members) == 1 else 'are'}"
            try:
                with transaction.atomic():
                    existing = PublicIncident.objects.create(
                        page_id=page_id,
                        incident=incident,
                        title=f"{title} experiencing issues"[:300],
                        created_at=incident.opened_at,
                    )
                    existing.components.set(members)
            except IntegrityError:  # made by auto-publishing meanwhile
                existing = PublicIncident.objects.get(page_id=page_id, incident=incident)
        drafts.append(existing)
    return drafts


# --- Subscribers ------------------------------------------------------------------------------


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    """Read-mostly: people subscribe themselves; an admin may only remove a subscription."""

    list_display = ["__str__", "kind", "page", "confirmed_at", "created_at"]
    list_filter = ["page", "kind", ("confirmed_at", admin.EmptyFieldListFilter)]
    list_select_related = ["page"]
    search_fields = ["email", "url"]
    fields = ["page", "kind", "email", "url", "confirmed_at", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
