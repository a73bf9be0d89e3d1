"""Heartbeat ping endpoints: `/ping/<key>[/start|/fail|/<exit code>]`.

Jobs call these from cron and CI scripts, often in a tight retry loop, so a
ping costs one INSERT and one Redis call and nothing else: the monitor is found
by the INSERT itself (`INSERT … SELECT … FROM checks_monitor WHERE ping_key =
…`), the rate limiter counts in one round trip, and the sweep
(checks.heartbeats) does the rest later. Unknown, malformed and non-heartbeat
keys all get the same 404, so the answer says nothing about which keys exist.
"""

from __future__ import annotations

import codecs
import functools
import ipaddress
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils import timezone
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from checks.bulk import bound_cursor
from checks.models import PING_BODY_LIMIT, PING_USER_AGENT_LIMIT, Monitor, Ping

logger = logging.getLogger(__name__)

EXIT_CODE = re.compile(r"[0-9]{1,3}")
PLAIN = "text/plain; charset=utf-8"
COLUMNS = ("kind", "exit_code", "received_at", "remote_addr", "user_agent", "method", "body")


def rate_limit() -> int:
    return settings.PING_RATE_LIMIT


def rate_window() -> int:
    return settings.PING_RATE_WINDOW


def not_found() -> HttpResponse:
    return HttpResponse("not found", status=404, content_type=PLAIN)


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
        if request.path_info.startswith("/ping/"):
            for pattern in ping_patterns():
                match = pattern.resolve(request.path_info[1:])
                if match:
                    request.resolver_match = match
                    return match.func(request, *match.args, **match.kwargs)
        return self.get_response(request)


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
@require_http_methods(["GET", "POST", "HEAD"])
def ping(request: HttpRequest, key: str, action: str | None = None) -> HttpResponse:
    parsed = parse_action(action)
    try:
        ping_key = uuid.UUID(key)
    except ValueError:
        ping_key = None
    if parsed is None or ping_key is None:
        return not_found()
    retry_after = over_limit(str(ping_key))
    if retry_after is not None:
        response = HttpResponse("rate limit exceeded", status=429, content_type=PLAIN)
        response["Retry-After"] = str(retry_after)
        return response
    kind, exit_code = parsed
    values = {
        "kind": kind,
        "exit_code": exit_code,
        "received_at": timezone.now(),
        "remote_addr": remote_addr(request),
        "user_agent": clean_text(request.headers.get("User-Agent", ""))[:PING_USER_AGENT_LIMIT],
        "method": request.method or "GET",
        "body": read_body(request) if request.method == "POST" else "",
    }
    if insert_ping(ping_key, values) is None:
        return not_found()
    return HttpResponse("OK", content_type=PLAIN)


def parse_action(action: str | None) -> tuple[str, int | None] | None:
    """The URL's last part → (ping kind, exit code); None when it is not one we know."""
    if action is None:
        return Ping.Kind.SUCCESS, None
    if action == "start":
        return Ping.Kind.START, None
    if action == "fail":
        return Ping.Kind.FAIL, None
    if EXIT_CODE.fullmatch(action) and int(action) <= 255:
        return Ping.Kind.EXIT_CODE, int(action)
    return None


def over_limit(key: str) -> int | None:
    """Seconds to wait if this key used up its pings for the window; None when it may ping.

    A fixed window counted in Django's cache (Redis in production): no database
    query. Any cache failure lets the ping through, because a limiter outage
    must not turn every job's heartbeat into a false alarm.
    """
    window = rate_window()
    now = time.time()
    slot = int(now // window)
    try:
        count = count_ping(f"ping-rate:{key}:{slot}", window)
    except Exception:
        logger.warning("ping rate limiter unavailable; letting pings through", exc_info=True)
        return None
    if count <= rate_limit():
        return None
    return max(1, math.ceil((slot + 1) * window - now))


# The count of a key's window, created with its expiry by the first ping:
# atomic, and one round trip (Django's cache.incr is EXISTS then INCRBY, and
# the first ping of a window adds a SET).
INCR_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class _RedisCounter(threading.local):
    """This thread's limiter script, bound to the cache backend it was made for.

    Django's RedisCache builds a new client object on every call, which cost
    the web workers more CPU than the round trip itself; Django also gives each
    thread its own backend (and connection pool), so one script per thread.
    """

    backend: RedisCache | None = None
    script: Any = None


_counter = _RedisCounter()


def count_ping(name: str, window: int) -> int:
    """Count one ping in the cache key `name`, which lives two windows; returns the count."""
    backend = caches[DEFAULT_CACHE_ALIAS]
    if not isinstance(backend, RedisCache):  # the embedded default's file cache
        try:
            return backend.incr(name)
        except ValueError:  # the first ping of this window
            return 1 if backend.add(name, 1, timeout=window * 2) else backend.incr(name)
    if _counter.backend is not backend:
        client = backend._cache.get_client(write=True)
        _counter.script, _counter.backend = client.register_script(INCR_IN_WINDOW), backend
    # Django's key (prefix and version), so cache.get() reads the same counter;
    # not validated for memcached, which walks it a character at a time.
    key = backend.make_key(name)
    return int(_counter.script(keys=[key], args=[window * 2]))


def remote_addr(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the caller wrote unless a
    # trusted proxy set it, and this address is shown to operators as fact.
    raw = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(raw.split("%", 1)[0]))
    except ValueError:
        return None


def read_body(request: HttpRequest) -> str:
    """The first 10 KB of the body, read from the stream so a huge upload is never held."""
    raw = request.read(PING_BODY_LIMIT)
    # An incremental decoder drops a multi-byte character cut at the limit
    # instead of storing a replacement character past it.
    text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(raw, final=False)
    return clean_text(text)


def clean_text(text: str) -> str:
    return text.replace("\x00", "")  # PostgreSQL text cannot hold NUL


def insert_ping(ping_key: uuid.UUID, values: dict[str, object]) -> int | None:
    """Store the ping if the key belongs to a heartbeat monitor; the new row's id, else None."""
    sql, fields = insert_statement(connection.vendor)
    if connection.vendor == "postgresql":
        # psycopg binds these plain values as they are (the casts type the NULLs).
        params = [values[name] for name in COLUMNS] + [ping_key]
    else:
        params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
        params.append(Monitor._meta.get_field("ping_key").get_db_prep_value(ping_key, connection))
    params.append(Monitor.Kind.HEARTBEAT.value)

    def insert() -> int | None:
        # Parameters bound by the server: merging them into the statement on
        # the client (Django's default) cost more CPU than the INSERT.
        with bound_cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return row[0] if row else None

    try:
        return insert()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block or connection.is_usable():
            raise
        # A kept connection the server has dropped (restart, idle timeout):
        # what CONN_HEALTH_CHECKS finds with a SELECT 1 before a request's first
        # query, found here by the INSERT itself, so a healthy connection pays
        # no extra round trip. Should the server have stored the row and died
        # before answering, the ping is stored twice, which the sweep reads as
        # two pings of the same minute.
        connection.close()
        return insert()


@functools.cache
def insert_statement(vendor: str) -> tuple[str, list[Any]]:
    """The ping INSERT for this database, and the Ping fields of its parameters, in order."""
    fields = [Ping._meta.get_field(name) for name in COLUMNS]
    # Typed placeholders: in INSERT … SELECT, PostgreSQL types a bare NULL or
    # string in the select list as text, which does not convert to smallint or inet.
    select = ", ".join(
        f"CAST(%s AS {field.cast_db_type(connection)})"
        if field.name in ("exit_code", "remote_addr")
        else "%s"
        for field in fields
    )
    sql = (
        f"INSERT INTO {Ping._meta.db_table} (monitor_id, {', '.join(COLUMNS)}) "  # noqa: S608
        f"SELECT id, {select} FROM {Monitor._meta.db_table} "
        "WHERE ping_key = %s AND kind = %s RETURNING id"
    )
    return sql, fields
