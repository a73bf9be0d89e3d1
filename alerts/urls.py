"""Public endpoints of the alerts app (the on-call iCal feed)."""

from __future__ import annotations

from django.urls import URLPattern, path

from alerts import views

urlpatterns: list[URLPattern] = [
    path("oncall/schedules/<uuid:feed_key>.ics", views.oncall_ical, name="oncall-ical"),
]
