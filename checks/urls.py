"""Public endpoints of the checks app (heartbeat pings)."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
