from __future__ import annotations

from django.urls import URLPattern, path

from incidents import views

urlpatterns: list[URLPattern] = [
    path("ack/<str:token>/", views.acknowledge_link, name="incident-ack"),
]
