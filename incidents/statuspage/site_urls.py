"""The public status page's own pages (the feeds and API are in feeds_urls)."""

from __future__ import annotations

from django.urls import URLPattern, path

from incidents.statuspage import views

urlpatterns: list[URLPattern] = [
    path("", views.home, name="status-home"),
    path("incidents/<int:pk>/", views.incident, name="status-incident"),
    path("history/", views.history, name="status-history"),
]
