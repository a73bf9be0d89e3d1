"""Which status page a request is for, and the public URLs of a page.

The status page middleware sets `request.status_page` (a StatusSite) for
requests whose Host is a page's host; `page_for` uses it, and otherwise looks
the host up itself (so these views also work when reached another way, e.g.
tests routed with `pytest.mark.urls`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse

from incidents.models import StatusPage
from incidents.statuspage.cache import cached_response
from incidents.statuspage.derive import page_snapshot

PUBLIC_URLCONF = "incidents.statuspage.public_urls"


def hosts_of(request: HttpRequest) -> list[str]:
    """The request's host as a page may name it: with its port first, then without."""
    host = request.get_host().lower()
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return list(dict.fromkeys([host, bare]))


def page_for(request: HttpRequest) -> StatusPage:
    """The page this request is for, or Http404."""
    site = getattr(request, "status_page", None)
    if isinstance(site, StatusPage):
        return site
    if site is not None:  # the middleware's StatusSite: the page is loaded on demand
        page = site.page
        if page is None:
            raise Http404("no status page is served at this host")
        return page
    hosts = hosts_of(request)
    found = {p.host: p for p in StatusPage.objects.filter(host__in=hosts)}
    for host in hosts:
        if host in found:
            request.status_page = found[host]  # type: ignore[attr-defined]
            return found[host]
    raise Http404("no status page is served at this host")


def snapshot_for(request: HttpRequest, page: StatusPage) -> dict[str, Any]:
    """What the page shows; the middleware's StatusSite keeps one per request."""
    site = getattr(request, "status_page", None)
    if site is not None and not isinstance(site, StatusPage):
        return site.snapshot
    return page_snapshot(page)


def cached(
    request: HttpRequest, page: StatusPage, name: str, render: Callable[[], HttpResponse]
) -> HttpResponse:
    """`render()`'s 200 response, shared through the status page cache.

    `name` must come from validated input (each name is a cache entry).
    """
    return cached_response(request, page.pk, name, render)


def page_url(page: StatusPage, path: str = "/") -> str:
    """An absolute URL on the page's host; the scheme is the site's (SITE_URL)."""
    scheme = urlsplit(settings.SITE_URL).scheme or "https"
    return f"{scheme}://{page.host}{path}"


def public_url(page: StatusPage, name: str, **kwargs: Any) -> str:
    return page_url(page, reverse(name, urlconf=PUBLIC_URLCONF, kwargs=kwargs or None))


def incident_url(page: StatusPage, incident_id: int) -> str:
    """The public incident's page (incidents.statuspage.site_urls)."""
    return public_url(page, "status-incident", pk=incident_id)
