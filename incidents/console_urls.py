"""The on-call console (staff only); see incidents.console."""

from __future__ import annotations

from django.urls import URLPattern, path

from incidents import console

urlpatterns: list[URLPattern] = [
    path("oncall/", console.console, name="oncall-console"),
    path("oncall/fragment/", console.fragment, name="oncall-fragment"),
    path("oncall/incidents/<int:pk>/<str:action>/", console.act, name="oncall-act"),
]
