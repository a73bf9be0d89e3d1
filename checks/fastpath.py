"""Heartbeat pings through a lean Django handler, at the WSGI level.

A ping is one INSERT and one Redis round trip; through Django's whole
handler it also passes ten middleware, each wrapped twice, a session store and
the status-page router, which do nothing for it (bench/README.md: the fast
path takes a further 4-8% off the app's CPU per ping). `PingFastPath` wraps the
WSGI application (monitorsite.wsgi): a
request for a ping URL goes to a handler of its own, built from Django's
WSGIHandler with a middleware chain cut down to the middleware that acts on
ping URLs, around the same view PingMiddleware calls. So a ping gets the same
answer, headers, logging, signals (request_started / request_finished close
old database connections) and error handling as through Django, and every
other request goes to Django unchanged. PING_FAST_PATH=false turns it off.

The middleware the cut-down chain leaves out is named by the caller as
passive for ping URLs; everything else listed before PingMiddleware stays in
it. A request carrying the session cookie goes through Django, since
SessionMiddleware answers one it cannot read by deleting it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler, get_path_info
from django.core.signals import setting_changed
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import ResolverMatch
from django.utils.module_loading import import_string

from checks.views import is_ping_path, resolve_ping

PING_MIDDLEWARE = "checks.views.PingMiddleware"
PREFIX = "/ping/"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class PingFastPath:
    """The WSGI application: ping URLs through `PingHandler`, the rest through `application`."""

    def __init__(self, application: WSGIApp, passive: Iterable[str] = ()) -> None:
        self.application = application
        self.passive = frozenset(passive)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").startswith(PREFIX) and settings.PING_FAST_PATH:
            handler = ping_handler(self.passive)
            if handler is not None and handler.serves(environ):
                return handler(environ, start_response)
        return self.application(environ, start_response)


class PingHandler(WSGIHandler):
    """Django's WSGI handler whose middleware chain ends in the ping view.

    WSGIHandler and BaseHandler.get_response run as they are: script prefix,
    request_started, the request object, the URLconf reset, 4xx logging, the
    status line, and request_finished when the server closes the response.
    Sentry's Django integration patches WSGIHandler.__call__, so it sees
    pings too.
    """

    def __init__(self, acting: list[str]) -> None:
        self.acting = acting
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler.load_middleware's construction, for `acting` only: every
        # layer wrapped so an exception becomes the response Django would give.
        handler = convert_exception_to_response(call_ping_view)
        for path in reversed(self.acting):
            handler = convert_exception_to_response(import_string(path)(handler))
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._middleware_chain = handler

    def serves(self, environ: dict[str, Any]) -> bool:
        if settings.SESSION_COOKIE_NAME in environ.get("HTTP_COOKIE", ""):
            return False
        # A path no ping pattern matches (/ping/a/b/c) gets Django's own 404.
        return is_ping_path(get_path_info(environ))


def call_ping_view(request: HttpRequest) -> HttpResponse:
    """What PingMiddleware does for a ping URL."""
    match: ResolverMatch | None = resolve_ping(request.path_info)
    if match is None:  # serves() matched this path before the request was built
        raise Http404
    request.resolver_match = match
    return match.func(request, *match.args, **match.kwargs)


@functools.cache
def ping_handler(passive: frozenset[str]) -> PingHandler | None:
    """The handler for the current settings; None when PingMiddleware is not installed."""
    middleware = list(settings.MIDDLEWARE)
    if PING_MIDDLEWARE not in middleware:
        return None
    before = middleware[: middleware.index(PING_MIDDLEWARE)]
    return PingHandler([path for path in before if path not in passive])


def _settings_changed(**kwargs: Any) -> None:
    # Middleware reads settings when built (SecurityMiddleware's HSTS and
    # redirect), so a changed setting (tests) builds the handler again.
    ping_handler.cache_clear()


setting_changed.connect(_settings_changed)
