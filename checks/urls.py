"""Public endpoints of the checks app (heartbeat pings)."""

from __future__ import annotations

from django.urls import URLPattern, re_path

from checks import views

# One pattern for every key and suffix, with or without a trailing slash, so
# that a malformed key or suffix gets the view's own 404 and not Django's.
urlpatterns: list[URLPattern] = [
    re_path(r"^ping/(?P<key>[^/]+)/?$", views.ping, name="ping"),
    re_path(r"^ping/(?P<key>[^/]+)/(?P<action>[^/]+)/?$", views.ping, name="ping-action"),
]
