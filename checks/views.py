"""Heartbeat ping endpoints: `/ping/<key>[/start|/fail|/<exit code>]`.

The view adapts a Django request to checks.pings, where a ping is counted,
checked and stored. Under gunicorn, monitorsite.wsgi sends pings to this same
view through checks.fastpath, past Django's handler and the middleware a ping
does not use; other servers (and the test client) come through the URLconf
and PingMiddleware.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import ResolverMatch, URLPattern
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from checks import pings


class PingMiddleware:
    """Sends heartbeat pings to their view past the middleware they do not use.

    Listed right after CommonMiddleware, so the host check, the security
    headers and Content-Length still apply. Sessions, CSRF (the view is
    exempt), authentication, messages and frame options do nothing for a ping,
    and the root URLconf would try every other app's patterns first; at a
    thousand pings a second they were a tenth of the web workers' CPU. Any
    path that is not a ping URL goes down the chain as usual.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        match = resolve_ping(request.path_info)
        if match is None:
            return self.get_response(request)
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)


def resolve_ping(path_info: str) -> ResolverMatch | None:
    """The ping view and its arguments for a ping URL's path; None for any other path."""
    if path_info.startswith("/ping/"):
        for pattern in ping_patterns():
            match = pattern.resolve(path_info[1:])
            if match:
                return match
    return None


def is_ping_path(path_info: str) -> bool:
    """resolve_ping(path_info) is not None, without building the ResolverMatch."""
    path = path_info[1:]
    return path_info.startswith("/ping/") and any(p.pattern.match(path) for p in ping_patterns())


@functools.cache
def ping_patterns() -> list[URLPattern]:
    from checks.urls import urlpatterns  # the same patterns the URLconf serves

    return urlpatterns


# What @never_cache sets, written as it ends up: Django's version parses and
# merges Cache-Control twice per response, a twentieth of a ping's CPU.
NEVER_CACHE = "max-age=0, no-cache, no-store, must-revalidate, private"


def uncached(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.headers["Expires"] = http_date()
        response.headers["Cache-Control"] = NEVER_CACHE
        return response

    return wrapper


@csrf_exempt
@uncached
@require_http_methods(list(pings.METHODS))
def ping(request: HttpRequest, key: str, action: str | None = None) -> HttpResponse:
    answer = pings.receive(
        key,
        action,
        method=request.method or "GET",
        remote=request.META.get("REMOTE_ADDR") or "",
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        read=request.read,
    )
    response = HttpResponse(answer.body, status=answer.status, content_type=pings.PLAIN)
    for name, value in answer.headers:
        response.headers[name] = value
    return response
