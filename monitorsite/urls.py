from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from monitorsite import health

admin.site.site_header = "Watchpost"
admin.site.site_title = "Watchpost admin"
admin.site.index_title = "Monitoring"

urlpatterns = [
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", health.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("checks.api_urls")),
    path("api/v1/", include("incidents.api_urls")),
    path("", include("alerts.urls")),
    path("", include("incidents.urls")),
    path("", include("incidents.console_urls")),
    path("", include("checks.urls")),
]
