"""The URLs of a public status page, served to requests whose Host is a page's host.

incidents.statuspage.middleware sets request.urlconf to this module for them.
"""

from __future__ import annotations

from django.urls import URLResolver, include, path

urlpatterns: list[URLResolver] = [
    path("", include("incidents.statuspage.site_urls")),
    path("", include("incidents.statuspage.feeds_urls")),
]
