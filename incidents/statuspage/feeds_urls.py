"""The status page's feeds, JSON API, badges and subscriptions (part of its public URLs)."""

from __future__ import annotations

from django.urls import URLPattern, path

from incidents.statuspage import api, badges, feeds, subscriptions

urlpatterns: list[URLPattern] = [
    path("feed.atom", feeds.atom, name="status-feed-atom"),
    path("feed.rss", feeds.rss, name="status-feed-rss"),
    path("api/v2/summary.json", api.summary, name="status-api-summary"),
    path("api/v2/status.json", api.status, name="status-api-status"),
    path("badge/<int:component_id>/status.svg", badges.status_badge, name="status-badge-status"),
    path("badge/<int:component_id>/uptime.svg", badges.uptime_badge, name="status-badge-uptime"),
    path("subscribe/", subscriptions.subscribe, name="status-subscribe"),
    path(
        "subscribe/confirm/<uuid:token>/",
        subscriptions.confirm,
        name="status-subscribe-confirm",
    ),
    path("unsubscribe/<uuid:token>/", subscriptions.unsubscribe, name="status-unsubscribe"),
]
