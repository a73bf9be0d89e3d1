"""Heartbeat pings answered at the WSGI level, before Django builds a request.

A ping is one INSERT and one Redis round trip (checks.pings). Through
Django's whole handler it also passes ten middleware, each wrapped twice, a
session store and the status-page router, and a request and a response object
are built around it: together they cost more CPU than the ping itself.
`PingFastPath` wraps the WSGI application (monitorsite.wsgi) and sends a
request for a ping URL to `PingHandler`; every other request goes to Django
unchanged. PING_FAST_PATH=false turns it off.

`PingHandler` answers a common ping through `LeanPing`, which writes the bytes
Django would (status, headers, body, the 4xx log line) without a request
object. Anything else, such as a host Django refuses, a method the view
refuses, an HTTPS redirect or an error, goes through a cut-down Django
handler. That handler is built from WSGIHandler, and its middleware chain
keeps only the middleware that acts on ping URLs and ends in the same view
PingMiddleware calls. So those answers, including a 500 page, its log and
Sentry's report, are Django's own. The tests compare the answers byte for
byte.

The middleware the cut-down chain leaves out is named by the caller as
passive for ping URLs; everything else listed before PingMiddleware stays in
it. A request carrying the session cookie goes through Django, since
SessionMiddleware answers one it cannot read by deleting it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import LimitedStream, WSGIHandler, WSGIRequest, get_path_info
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import Http404, HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.urls import ResolverMatch
from django.utils.http import http_date
from django.utils.log import log_response
from django.utils.module_loading import import_string

from checks import pings
from checks.views import NEVER_CACHE, is_ping_path, ping_patterns, resolve_ping

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
                return handler.answer(environ, start_response)
        return self.application(environ, start_response)


class PingHandler(WSGIHandler):
    """Django's WSGI handler whose middleware chain ends in the ping view.

    WSGIHandler and BaseHandler.get_response run as they are: script prefix,
    request_started, the request object, the URLconf reset, 4xx logging, the
    status line, and request_finished when the server closes the response.
    Sentry's Django integration patches WSGIHandler.__call__, so it sees
    the pings this chain answers, errors among them; the common ping, which
    LeanPing answers, is not traced.
    """

    def __init__(self, acting: list[str]) -> None:
        self.acting = acting
        super().__init__()
        self.lean = LeanPing(acting)

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

    def answer(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """The ping answered by LeanPing when it can, else by this handler's middleware chain."""
        route = self.lean.route(environ)
        if route is None:
            return self(environ, start_response)
        return self.lean.respond(environ, start_response, route, fallback=self)

    def serves(self, environ: dict[str, Any]) -> bool:
        if settings.SESSION_COOKIE_NAME in environ.get("HTTP_COOKIE", ""):
            return False
        # A path no ping pattern matches (/ping/a/b/c) gets Django's own 404.
        return is_ping_path(get_path_info(environ))


def call_ping_view(request: HttpRequest) -> HttpResponse:
    """What PingMiddleware does for a ping URL (or the error LeanPing met, raised again)."""
    error = request.META.pop(LEAN_ERROR, None)
    if error is not None:
        raise error
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


# --- The lean path: a ping answered without building Django's request ---------------------

# The error LeanPing met, handed to the middleware chain to answer as Django does.
LEAN_ERROR = "watchpost.ping_error"
SECURITY = "django.middleware.security.SecurityMiddleware"
COMMON = "django.middleware.common.CommonMiddleware"


class LeanPing:
    """Answers a ping with the bytes Django would send, without Django's request and response.

    Building the request, passing the middleware chain and building the
    response cost as much CPU as receiving the ping itself (the INSERT and the
    limiter's round trip). What the chain does to a ping is small and fixed
    when only SecurityMiddleware and CommonMiddleware act on it: the host
    check, the HTTPS redirect, Content-Length and four security headers. This
    class does exactly that, for the settings that keep it that small, and
    hands everything else to the chain: a host Django would refuse, a method
    the view refuses, a redirect, and any error (the chain raises it again,
    so the 500 page, its log line and Sentry are Django's own). The tests
    compare the two answers byte for byte.
    """

    def __init__(self, acting: list[str]) -> None:
        self.enabled = set(acting) <= {SECURITY, COMMON} and not (
            settings.USE_X_FORWARDED_HOST
            or settings.USE_X_FORWARDED_PORT
            or settings.PREPEND_WWW
            or settings.DISALLOWED_USER_AGENTS
        )
        self.security = SECURITY in acting
        self.common = COMMON in acting
        self.redirect_exempt = [re.compile(r) for r in settings.SECURE_REDIRECT_EXEMPT]
        self.allowed_hosts = allowed_hosts()
        self.proxy_header = settings.SECURE_PROXY_SSL_HEADER
        self.tail: list[tuple[str, str]] = []  # what SecurityMiddleware adds to every answer
        if self.security and settings.SECURE_CONTENT_TYPE_NOSNIFF:
            self.tail.append(("X-Content-Type-Options", "nosniff"))
        if self.security and settings.SECURE_REFERRER_POLICY:
            policy = settings.SECURE_REFERRER_POLICY
            if not isinstance(policy, str):
                policy = ",".join(policy)
            self.tail.append(("Referrer-Policy", policy))
        if self.security and settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
            self.tail.append(
                ("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY)
            )
        self.hsts = hsts_header() if self.security else None
        self.good_hosts: set[str] = set()

    def route(self, environ: dict[str, Any]) -> tuple[str, str | None] | None:
        """The ping's key and action when this class can answer it all; else None."""
        if not self.enabled or environ.get("REQUEST_METHOD", "").upper() not in pings.METHODS:
            return None
        if self.common and not self.host_allowed(environ):
            return None  # Django's 400 and its log line
        if self.security and settings.SECURE_SSL_REDIRECT and not self.is_secure(environ):
            path = get_path_info(environ).lstrip("/")
            if not any(pattern.search(path) for pattern in self.redirect_exempt):
                return None  # Django's redirect to https
        return match_ping(get_path_info(environ))

    def host_allowed(self, environ: dict[str, Any]) -> bool:
        host = environ.get("HTTP_HOST") or wsgi_server_host(environ)
        if host in self.good_hosts:
            return True
        domain, _port = split_domain_port(host)
        if not domain or not validate_host(domain, self.allowed_hosts):
            return False
        if len(self.good_hosts) < 1024:  # hosts a ping arrives by are few; never a memory sink
            self.good_hosts.add(host)
        return True

    def is_secure(self, environ: dict[str, Any]) -> bool:
        # HttpRequest.is_secure(), from the environ.
        if self.proxy_header:
            header, secure = self.proxy_header
            value = environ.get(header)
            if value is not None:
                return value.split(",", 1)[0].strip() == secure
        return environ.get("wsgi.url_scheme") == "https"

    def respond(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        route: tuple[str, str | None],
        fallback: PingHandler,
    ) -> Any:
        refresh_connection()
        method = environ["REQUEST_METHOD"].upper()
        try:
            answer = pings.receive(
                route[0],
                route[1],
                method=method,
                remote=environ.get("REMOTE_ADDR") or "",
                user_agent=environ.get("HTTP_USER_AGENT", ""),
                read=LimitedStream(environ["wsgi.input"], content_length(environ)).read,
            )
        except Exception as exc:  # answered by Django's own error handling, below
            environ[LEAN_ERROR] = exc
            return fallback(environ, start_response)
        body = answer.body.encode()
        headers = [("Content-Type", pings.PLAIN), *answer.headers]
        headers += [("Expires", http_date()), ("Cache-Control", NEVER_CACHE)]
        if self.common:
            headers.append(("Content-Length", str(len(body))))
        if self.hsts and self.is_secure(environ):
            headers.append(("Strict-Transport-Security", self.hsts))
        headers += self.tail
        response = Finished([body])
        if answer.status >= 400:
            log_refused(environ, answer.status)
        start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}", headers)
        return response


class Finished(list):  # type: ignore[type-arg]
    """The body; when the server closes it, the connection is checked as after a request."""

    def close(self) -> None:
        refresh_connection()


def refresh_connection() -> None:
    """What request_started and request_finished do for a ping's database connection.

    Through the signals, every configured connection and cache is visited
    (and the query log reset) on both sides of every request: a seventh of a
    ping's CPU. A ping uses the default database alone and no transaction, so
    checking that one connection does the same: a broken one, or one past
    CONN_MAX_AGE, is closed and the next query opens another. A connection
    inside an atomic block is a test's own transaction, which Django's test
    client keeps open the same way (by disconnecting the signals' handler).
    """
    connection = connections[DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def match_ping(path_info: str) -> tuple[str, str | None] | None:
    """(key, action) of a ping URL, by the URLconf's own patterns; None for any other path."""
    path = path_info[1:]
    for pattern in ping_patterns():
        found = pattern.pattern.match(path)
        if found:
            kwargs = found[2]
            return kwargs["key"], kwargs.get("action")
    return None


def log_refused(environ: dict[str, Any], status: int) -> None:
    # The "Not Found: /ping/…" warning Django's handler logs for a 4xx answer.
    response = HttpResponse(status=status)
    request = WSGIRequest(environ)
    log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)


def content_length(environ: dict[str, Any]) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def wsgi_server_host(environ: dict[str, Any]) -> str:
    # HttpRequest._get_raw_host() without a Host header.
    host = environ.get("SERVER_NAME", "")
    port = str(environ.get("SERVER_PORT", ""))
    scheme_port = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
    return host if port == scheme_port else f"{host}:{port}"


def allowed_hosts() -> list[str]:
    # HttpRequest.get_host()'s list: DEBUG with none set allows the local names.
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def hsts_header() -> str | None:
    # SecurityMiddleware's Strict-Transport-Security value.
    if not settings.SECURE_HSTS_SECONDS:
        return None
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value
