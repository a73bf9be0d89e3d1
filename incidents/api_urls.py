"""The JSON API of the incidents app, under /api/v1/."""

from __future__ import annotations

from django.urls import URLPattern, path

from incidents.api import IncidentViewSet

# No trailing slash on the actions, like /monitors/<id>/run.
urlpatterns: list[URLPattern] = [
    path("incidents/", IncidentViewSet.as_view({"get": "list"}), name="api-incident-list"),
    path(
        "incidents/<int:pk>/",
        IncidentViewSet.as_view({"get": "retrieve"}),
        name="api-incident-detail",
    ),
    path(
        "incidents/<int:pk>/acknowledge",
        IncidentViewSet.as_view({"post": "acknowledge"}),
        name="api-incident-acknowledge",
    ),
    path(
        "incidents/<int:pk>/resolve",
        IncidentViewSet.as_view({"post": "resolve"}),
        name="api-incident-resolve",
    ),
    path(
        "incidents/<int:pk>/notes",
        IncidentViewSet.as_view({"post": "notes"}),
        name="api-incident-notes",
    ),
]
