"""Host routing: requests for a status page's host get the public site, not the admin.

Runs on every request (admin, API and heartbeat pings too), so the common case
is a dictionary lookup in this process (see incidents.statuspage.cache).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port
from django.urls import Resolver404, get_resolver, set_urlconf

from incidents.statuspage.cache import page_id_for_host

PUBLIC_URLCONF = "incidents.statuspage.public_urls"
SITE_URLCONF = "incidents.statuspage.site_urls"  # the pages this module serves directly
# Machinery, not a site: heartbeat pings, health probes, metrics and static
# files answer the same on every host, and they are never routed. They are also
# the paths that must not wait on the host map: a ping is one query, and a
# liveness probe must not hang on a database that is down.
UNROUTED_PATHS = ("/ping/", "/health/", "/metrics", "/static/")

# Strict: nothing runs but what the page's own origin serves, and the page
# needs no script at all; images may come from the page's logo host (https).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'none'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    # Also XFrameOptionsMiddleware's, for the pages served past it (serve_directly).
    "X-Frame-Options": "DENY",
}  # SecurityMiddleware (outside this one) adds nosniff, the referrer and opener policies


class StatusSite:
    """What the public views get as `request.status_page`: the page's id, the rest on demand."""

    def __init__(self, page_id: int, host: str) -> None:
        self.id = page_id
        self.host = host

    @cached_property
    def page(self) -> Any:
        """The StatusPage (one query; None when it was deleted a moment ago)."""
        from incidents.models import StatusPage

        return StatusPage.objects.filter(pk=self.id).first()

    @cached_property
    def snapshot(self) -> dict[str, Any]:
        """What the page shows (incidents.statuspage.derive.page_snapshot); many queries."""
        from incidents.statuspage.derive import page_snapshot

        return page_snapshot(self.page)


def admin_hosts() -> frozenset[str]:
    """SITE_URL's host, with and without its port: never a status page (it would hide the admin)."""
    site = urlsplit(settings.SITE_URL)
    return frozenset(h.lower() for h in (site.hostname, site.netloc) if h)


class StatusPageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.admin_hosts = admin_hosts()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        site = self.route(request)
        if site is None:
            return self.get_response(request)
        request.urlconf = PUBLIC_URLCONF
        request.status_page = site  # type: ignore[attr-defined]
        response = serve_directly(request)
        if response is None:
            response = self.get_response(request)
        for header, value in SECURITY_HEADERS.items():
            response.setdefault(header, value)  # a view may set a stricter one
        return response

    def route(self, request: HttpRequest) -> StatusSite | None:
        if request.path_info.startswith(UNROUTED_PATHS):
            return None
        # get_host() checks ALLOWED_HOSTS: an unknown host is a 400, as everywhere.
        host = request.get_host().lower()
        if host in self.admin_hosts:
            return None
        page_id = page_id_for_host(host)
        if page_id is None:
            # A page for "status.example.com" also answers "status.example.com:8443".
            domain, port = split_domain_port(host)
            if port and domain not in self.admin_hosts:
                page_id = page_id_for_host(domain)
        return None if page_id is None else StatusSite(page_id, host)


def serve_directly(request: HttpRequest) -> HttpResponse | None:
    """The page's own pages on GET, straight from their view, past the rest of the chain.

    Sessions, CSRF, authentication and messages do nothing for these views (a
    cached page holds nothing personal), and at a thousand requests a second
    the chain cost about a fifth of a hit's time. Everything else (feeds, API,
    subscribing, a path CommonMiddleware would add a slash to) takes the chain.
    """
    if request.method not in ("GET", "HEAD"):
        return None
    try:
        match = get_resolver(SITE_URLCONF).resolve(request.path_info)
    except Resolver404:
        return None
    set_urlconf(PUBLIC_URLCONF)  # what the handler does for request.urlconf: reverse() uses it
    request.resolver_match = match
    response: HttpResponse = match.func(request, *match.args, **match.kwargs)
    if response.status_code != 304 and not response.streaming and "Content-Length" not in response:
        response["Content-Length"] = str(len(response.content))  # CommonMiddleware's job
    return response
