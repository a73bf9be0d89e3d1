"""Receiving a heartbeat ping: the one implementation behind both ways in.

A ping costs one INSERT and one Redis call and nothing else: the monitor is
found by the INSERT itself (`INSERT … SELECT … FROM checks_monitor WHERE
ping_key = …`), the rate limiter counts in one round trip, and the sweep
(checks.heartbeats) does the rest later. Unknown, malformed and non-heartbeat
keys all get the same 404, so the answer says nothing about which keys exist.

Pings arrive through the Django view (checks.views.ping) or, under gunicorn,
through the WSGI fast path (checks.fastpath), which calls the same view past
the middleware a ping does not use; both come here.
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
from typing import Any, NamedTuple

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.utils import timezone
from redis.exceptions import NoScriptError

from checks.bulk import bound_cursor
from checks.models import PING_BODY_LIMIT, PING_USER_AGENT_LIMIT, Monitor, Ping

logger = logging.getLogger(__name__)

METHODS = ("GET", "POST", "HEAD")
EXIT_CODE = re.compile(r"[0-9]{1,3}")
PLAIN = "text/plain; charset=utf-8"
COLUMNS = ("kind", "exit_code", "received_at", "remote_addr", "user_agent", "method", "body")


class Answer(NamedTuple):
    """What a ping is answered: status, plain-text body and any extra headers."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()


RECORDED = Answer(200, "OK")
NOT_FOUND = Answer(404, "not found")


def receive(
    key: str,
    action: str | None,
    *,
    method: str,
    remote: str,
    user_agent: str,
    read: Callable[[int], bytes],
) -> Answer:
    """Count, check and store one ping of an allowed method; `read` reads its body (POST)."""
    parsed = parse_action(action)
    try:
        ping_key = uuid.UUID(key)
    except ValueError:
        ping_key = None
    if parsed is None or ping_key is None:
        return NOT_FOUND
    retry_after = over_limit(str(ping_key))
    if retry_after is not None:
        return Answer(429, "rate limit exceeded", (("Retry-After", str(retry_after)),))
    kind, exit_code = parsed
    values = {
        "kind": kind,
        "exit_code": exit_code,
        "received_at": timezone.now(),
        "remote_addr": remote_addr(remote),
        "user_agent": clean_text(user_agent)[:PING_USER_AGENT_LIMIT],
        "method": method,
        "body": read_body(read) if method == "POST" else "",
    }
    return NOT_FOUND if insert_ping(ping_key, values) is None else RECORDED


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
    window = settings.PING_RATE_WINDOW
    now = time.time()
    slot = int(now // window)
    try:
        count = count_ping(f"ping-rate:{key}:{slot}", window)
    except Exception:
        logger.warning("ping rate limiter unavailable; letting pings through", exc_info=True)
        return None
    if count <= settings.PING_RATE_LIMIT:
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
    """This thread's own Redis connection for the limiter, and the backend it was made for.

    Going through redis-py's client (a script object, the client's retry
    wrapper, the connection pool's bookkeeping and metrics) cost the web
    workers four times the CPU of sending the command on a connection of
    their own. Django gives each thread its own cache backend, so one
    connection per thread, made with the backend's options (address,
    timeouts) and rebuilt when the backend changes.
    """

    backend: RedisCache | None = None
    connection: Any = None
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
        _counter.backend, _counter.connection = None, None
        client = backend._cache.get_client(write=True)
        pool = client.connection_pool
        connection = pool.connection_class(**pool.connection_kwargs)
        _counter.script = client.register_script(INCR_IN_WINDOW)
        _counter.backend, _counter.connection = backend, connection
    # Django's key (prefix and version), so cache.get() reads the same counter;
    # not validated for memcached, which walks it a character at a time.
    key = backend.make_key(name)
    return int(run_script(_counter.connection, _counter.script, key, window * 2))


def run_script(connection: Any, script: Any, key: str, expire: int) -> Any:
    """EVALSHA on `connection`, loading the script first if the server has lost it (a restart)."""
    try:
        try:
            return command(connection, "EVALSHA", script.sha, 1, key, expire)
        except NoScriptError:
            command(connection, "SCRIPT", "LOAD", script.script)
            return command(connection, "EVALSHA", script.sha, 1, key, expire)
    except BaseException:
        # A reply may still be on its way: the next ping reconnects (redis-py
        # connects on send) rather than read it as its own.
        connection.disconnect()
        raise


def command(connection: Any, *args: Any) -> Any:
    connection.send_packed_command(connection.pack_command(*args), check_health=False)
    return connection.read_response()


# Jobs ping from a few addresses again and again, and parsing one took a
# twentieth of the view's CPU.
@functools.lru_cache(maxsize=4096)
def remote_addr(raw: str) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the caller wrote unless a
    # trusted proxy set it, and this address is shown to operators as fact.
    try:
        return str(ipaddress.ip_address(raw.split("%", 1)[0]))
    except ValueError:
        return None


def read_body(read: Callable[[int], bytes]) -> str:
    """The first 10 KB of the body, read from the stream so a huge upload is never held."""
    raw = read(PING_BODY_LIMIT)
    # An incremental decoder drops a multi-byte character cut at the limit
    # instead of storing a replacement character past it.
    text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(raw, final=False)
    return clean_text(text)


def clean_text(text: str) -> str:
    return text.replace("\x00", "")  # PostgreSQL text cannot hold NUL


def insert_ping(ping_key: uuid.UUID, values: dict[str, object]) -> int | None:
    """Store the ping if the key belongs to a heartbeat monitor; the new row's id, else None."""
    # The connection itself, not django.db.connection: each attribute read
    # through that proxy looks the thread's connection up again.
    connection = connections[DEFAULT_DB_ALIAS]
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
        with bound_cursor(kept=True) as cursor:
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
    connection = connections[DEFAULT_DB_ALIAS]
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
