"""The JSON API of the checks app, under /api/v1/."""

from __future__ import annotations

from django.urls import URLPattern, path
from drf_spectacular.views import SpectacularAPIView

from checks.api import MonitorViewSet

# Explicit paths rather than a router: the run endpoint is `/monitors/<id>/run`
# (no trailing slash), as the seeds' "manual evaluate" calls it.
monitor_list = MonitorViewSet.as_view({"get": "list", "post": "create"})
monitor_detail = MonitorViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)
monitor_run = MonitorViewSet.as_view({"post": "run"})

urlpatterns: list[URLPattern] = [
    path("monitors/", monitor_list, name="api-monitor-list"),
    path("monitors/<int:pk>/", monitor_detail, name="api-monitor-detail"),
    path("monitors/<int:pk>/run", monitor_run, name="api-monitor-run"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]
