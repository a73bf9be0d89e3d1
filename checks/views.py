"""Heartbeat ping endpoints: `/ping/<key>[/start|/fail|/<exit code>]`.

Jobs call these from cron and CI scripts, often in a tight retry loop, so a
ping costs one INSERT and nothing else: the monitor is found by the INSERT
itself (`INSERT … SELECT … FROM checks_monitor WHERE ping_key = …`), and the
sweep (checks.heartbeats) does the rest later. Unknown, malformed and
non-heartbeat keys all get the same 404, so the answer says nothing about
which keys exist.
"""

from __future__ import annotations

import codecs
import ipaddress
import logging
import math
import re
import time
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

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


@csrf_exempt
@never_cache
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
    name = f"ping-rate:{key}:{slot}"
    try:
        try:
            count = cache.incr(name)
        except ValueError:  # the first ping of this window
            count = 1 if cache.add(name, 1, timeout=window * 2) else cache.incr(name)
    except Exception:
        logger.warning("ping rate limiter unavailable; letting pings through", exc_info=True)
        return None
    if count <= rate_limit():
        return None
    return max(1, math.ceil((slot + 1) * window - now))


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
    fields = [Ping._meta.get_field(name) for name in COLUMNS]
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    # Typed placeholders: in INSERT … SELECT, PostgreSQL types a bare NULL or
    # string in the select list as text, which does not convert to smallint or inet.
    select = ", ".join(
        f"CAST(%s AS {field.cast_db_type(connection)})"
        if field.name in ("exit_code", "remote_addr")
        else "%s"
        for field in fields
    )
    key_param = Monitor._meta.get_field("ping_key").get_db_prep_value(ping_key, connection)
    sql = (
        f"INSERT INTO {Ping._meta.db_table} (monitor_id, {', '.join(COLUMNS)}) "  # noqa: S608
        f"SELECT id, {select} FROM {Monitor._meta.db_table} "
        "WHERE ping_key = %s AND kind = %s RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, key_param, Monitor.Kind.HEARTBEAT.value])
        row = cursor.fetchone()
    return row[0] if row else None
