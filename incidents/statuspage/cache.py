"""The status page's caches: which host is which page, and each page's rendered bytes.

A public page is read far more often than it changes, and it must stay fast
while a thousand visitors reload it during an outage. So:

- **Hosts.** Every request (admin, API, pings too) asks whether its host is a
  status page. The answer comes from a map {host: page id} kept in this process
  for HOSTS_LOCAL_TTL seconds, backed by one cache entry, backed by one query.
  Editing a page bumps the hosts generation, so the shared entry is rebuilt;
  other processes see the change within HOSTS_LOCAL_TTL.
- **Rendered bytes.** A page's HTML (and any other public response a view
  wraps in `cached_response`) is stored under `statuspage:out1:<page>:<name>:<encoding>`
  together with the generations it was rendered at: a global one, bumped by
  `invalidate()` (a monitor changed state: any page may show it), and the
  page's own, bumped by `invalidate(page_id)`. A hit is one round trip (MGET of
  the two generations) and no database query: the bytes come from this
  process's copy when its generations still match, else from one more GET.
- **Backstop.** Time moves things no signal announces (a maintenance window
  starts, a new day's bar, new rollups), so an entry older than
  STATUS_PAGE_CACHE_TTL seconds is rendered again.
- **Rendered elsewhere.** A render is ~0.4 s of CPU, and inside a web process
  it holds the GIL that every queued hit needs. So when an entry is stale
  (a generation moved, or the TTL passed), the first request to see it claims
  a refresh (a short lock whose value is the claim's time), enqueues a Celery
  task that replays the request in a worker (incidents.statuspage.refresh),
  and serves the stale bytes, as every other request does meanwhile. Nobody
  waits for a render and none runs in the web process.
- **Never stale for long.** If the claim is older than
  STATUS_PAGE_REFRESH_GRACE seconds (no worker, a lost message, a backlog),
  or the broker refuses the task, one request renders in the web process
  after all (a second lock), so with the workers down a change shows within
  the grace. No entry at all: the request renders (there is nothing to serve
  meanwhile). A grace of 0 renders every stale entry in the request (one
  request at a time, the others served stale), as before the workers did it.

Generations are random tokens written with SET, not counters: SET is atomic,
and an entry rendered from data read before an invalidation carries the old
token, so it can never be mistaken for fresh (the token is read *before* the
database, see `cached_response`).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified

logger = logging.getLogger(__name__)

GEN = "statuspage:gen"
HOSTS_GEN = "statuspage:hosts-gen"
HOSTS = "statuspage:hosts"
HOSTS_LOCAL_TTL = 5.0  # seconds a process trusts its copy of the host map
HOSTS_SHARED_TTL = 3600
# A generation that expires reads as "none", which matches no stored entry
# rendered under a token: harmless, and nothing is kept forever.
GEN_TIMEOUT = 30 * 86400
LOCK_TTL = 30  # a renderer that died frees the lock after this long
GZIP_MIN_BYTES = 1024
RECENT_ENTRIES = 32  # rendered responses a process keeps (a 50-component page is ~0.5 MB)


def ttl() -> int:
    """Seconds after which a rendered page is rendered again even without a change."""
    return int(getattr(settings, "STATUS_PAGE_CACHE_TTL", 60))


def grace() -> float:
    """Seconds a claimed refresh may take in a worker before a request renders it itself."""
    return float(getattr(settings, "STATUS_PAGE_REFRESH_GRACE", 5.0))


# Set while a worker replays a request to re-render it (incidents.statuspage.refresh):
# `cached_response` then renders and stores a stale entry instead of serving it.
refreshing: ContextVar[bool] = ContextVar("statuspage_refreshing", default=False)


def page_gen_key(page_id: int) -> str:
    return f"statuspage:gen:{page_id}"


def out_key(page_id: int, name: str, encoding: str) -> str:
    # The number changes with Entry's fields, so a deploy never unpickles an old shape.
    return f"statuspage:out1:{page_id}:{name}:{encoding}"


def new_token() -> str:
    return secrets.token_hex(8)


# --- Reading, fast --------------------------------------------------------------


class _Reader(threading.local):
    """This thread's Redis client, bound to the cache backend it was made for.

    Django's RedisCache builds a new client object on every call, which costs
    more CPU than the round trip itself; on the page's hot path (two reads a
    request, a thousand requests a second) that was a third of the time.
    Django gives each thread its own backend, so one client per thread.
    """

    backend: Any = None
    client: Any = None


_reader = _Reader()


def get_many(keys: list[str]) -> dict[str, Any]:
    """cache.get_many(keys), in one MGET on a kept client when the cache is Redis."""
    backend = caches[DEFAULT_CACHE_ALIAS]
    if not isinstance(backend, RedisCache):  # the embedded default's file cache
        return backend.get_many(keys)
    if _reader.backend is not backend:
        _reader.client, _reader.backend = backend._cache.get_client(write=False), backend
    values = _reader.client.mget([backend.make_key(key) for key in keys])
    loads = backend._cache._serializer.loads  # Django's own format, so cache.get() agrees
    return {key: loads(value) for key, value in zip(keys, values, strict=True) if value is not None}


# --- Invalidation ---------------------------------------------------------------


def invalidate(page_id: int | None = None) -> None:
    """Make the next request render afresh: one page's output, or every page's."""
    key = GEN if page_id is None else page_gen_key(page_id)
    try:
        cache.set(key, new_token(), timeout=GEN_TIMEOUT)
    except Exception:  # the page is stale until the TTL; a write must not fail for it
        logger.exception("could not invalidate the status page cache")


def invalidate_on_commit(page_id: int | None = None) -> None:
    """Invalidate now and again once the transaction commits.

    Now, so this process's next read sees the change; after commit, because a
    request that rendered between the first bump and the commit read the old
    rows and stored them under the new token.
    """
    invalidate(page_id)
    transaction.on_commit(lambda: invalidate(page_id), robust=True)


def invalidate_hosts() -> None:
    """A page was added, removed or moved to another host."""
    _local.clear()
    try:
        cache.set(HOSTS_GEN, new_token(), timeout=GEN_TIMEOUT)
    except Exception:
        logger.exception("could not invalidate the status page host map")


# --- Hosts ----------------------------------------------------------------------


class LocalHosts:
    """This process's copy of the host map, trusted for HOSTS_LOCAL_TTL seconds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hosts: dict[str, int] | None = None
        self.expires = 0.0

    def clear(self) -> None:
        with self.lock:
            self.hosts, self.expires = None, 0.0

    def get(self) -> dict[str, int]:
        now = time.monotonic()
        hosts = self.hosts
        if hosts is not None and now < self.expires:
            return hosts
        try:
            hosts = shared_hosts()
        except Exception:
            # Cache and database both failing must not take the admin, the API
            # and the pings down with the status page: keep the last known map.
            logger.exception("could not read the status page host map")
            hosts = self.hosts or {}
        with self.lock:
            self.hosts, self.expires = hosts, now + HOSTS_LOCAL_TTL
        return hosts


_local = LocalHosts()


def shared_hosts() -> dict[str, int]:
    """The host map from the cache, rebuilt from the database when its generation moved."""
    try:
        found = cache.get_many([HOSTS, HOSTS_GEN])
    except Exception:
        logger.exception("could not read the status page host map from the cache")
        found = {}
    gen = found.get(HOSTS_GEN)
    entry = found.get(HOSTS)
    if entry is not None and entry[0] == gen:
        return entry[1]
    from incidents.models import StatusPage

    hosts = dict(StatusPage.objects.values_list("host", "id"))
    try:
        cache.set(HOSTS, (gen, hosts), timeout=HOSTS_SHARED_TTL)
    except Exception:
        logger.exception("could not store the status page host map")
    return hosts


def page_id_for_host(host: str) -> int | None:
    """The page served at `host` ("status.example.com" or "status.example.com:8443")."""
    return _local.get().get(host.lower())


# --- Rendered responses -----------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A rendered response as stored: enough to answer without rendering again."""

    gen: Any
    page_gen: Any
    born: float
    status: int
    content_type: str
    body: bytes
    gzipped: bool
    etag: str
    cache_control: str

    def fresh(self, gen: Any, page_gen: Any, now: float) -> bool:
        return self.gen == gen and self.page_gen == page_gen and now - self.born < ttl()


def accepts_gzip(request: HttpRequest) -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "").lower()


def cached_response(
    request: HttpRequest, page_id: int, name: str, render: Callable[[], HttpResponse]
) -> HttpResponse:
    """`render()`'s response for this page, from the cache when it is fresh.

    `name` tells apart the responses of one page ("home", "incident:12"); it
    must come from validated input, or visitors could fill the cache. Only
    200 responses are stored.
    """
    encoding = "gzip" if accepts_gzip(request) else "identity"
    page_key, key = page_gen_key(page_id), out_key(page_id, name, encoding)
    now = time.time()
    entry = _recent.get(key)
    try:
        # Read before anything is rendered: see the module's docstring.
        found = get_many([GEN, page_key])
    except Exception:
        logger.exception("status page cache unreadable; serving this process's copy")
        if entry is not None and now - entry.born < ttl():
            return respond(request, entry)  # no invalidation can reach us: the TTL bounds it
        return render_and_store(Job(request, page_id, name, None, None, render))
    gen, page_gen = found.get(GEN), found.get(page_key)
    if entry is not None and entry.fresh(gen, page_gen, now):
        return respond(request, entry)
    shared = read(key)
    if shared is not None and shared.fresh(gen, page_gen, now):
        _recent.put(key, shared)
        return respond(request, shared)
    stale, job = shared or entry, Job(request, page_id, name, gen, page_gen, render)
    if refreshing.get():  # a worker replaying this request: render it, serve nobody stale
        return render_and_store(job, keep=False)
    if stale is None or grace() <= 0:
        return render_inline(job, stale)
    refresh = refresh_in_background(request, page_id, name, now)
    if refresh.in_hand:
        return respond(request, stale)
    return render_inline(job, stale, refresh.overdue)


@dataclass(frozen=True)
class Job:
    """A response to render and store, with the generations read before rendering it."""

    request: HttpRequest
    page_id: int
    name: str
    gen: Any
    page_gen: Any
    render: Callable[[], HttpResponse]


def render_inline(job: Job, stale: Entry | None, overdue: str = "") -> HttpResponse:
    """Render in this request, one request at a time: the others get `stale` meanwhile.

    `overdue` is a worker's refresh claim past its grace: once rendered here, it
    is freed, so the next change goes to a worker again.
    """
    claimed = claim(job.page_id, job.name)
    if stale is not None and not claimed:
        return respond(job.request, stale)
    try:
        response = render_and_store(job)
    finally:
        if claimed:
            release(job.page_id, job.name)
    if overdue:
        release_refresh(job.page_id, job.name, overdue)
    return response


def render_and_store(job: Job, keep: bool = True) -> HttpResponse:
    """`render()`, stored under the generations read before it when it is a 200.

    `keep=False` leaves this process's copies alone (a worker serves no visitor).
    """
    encoding = "gzip" if accepts_gzip(job.request) else "identity"
    response = job.render()
    if response.status_code == 200 and not response.streaming:
        entry = store(job.page_id, job.name, job.gen, job.page_gen, response, encoding, keep)
        return respond(job.request, entry)
    return response


# --- Refreshing in a worker ---------------------------------------------------------


@dataclass(frozen=True)
class Refresh:
    """Where a stale entry's re-render stands, for a request that found it stale."""

    in_hand: bool  # a worker has it (queued now, or claimed within the grace): serve stale
    overdue: str = ""  # the token of a claim past its grace, when this request renders instead


def refresh_key(page_id: int, name: str) -> str:
    return f"statuspage:refresh:{page_id}:{name}"


def refresh_in_background(request: HttpRequest, page_id: int, name: str, now: float) -> Refresh:
    """Claim the entry's refresh and enqueue it, or see how old another request's claim is."""
    key, token = refresh_key(page_id, name), new_token()
    try:
        claimed = cache.add(key, (now, token), timeout=LOCK_TTL)
    except Exception:
        logger.exception("could not claim a status page refresh; rendering in the request")
        return Refresh(in_hand=False)
    if claimed:
        if enqueue_refresh(request, page_id, name, token):
            return Refresh(in_hand=True)
        release_refresh(page_id, name, token)  # no worker will run it
        return Refresh(in_hand=False)
    try:
        held = cache.get(key)
    except Exception:
        held = None
    if not isinstance(held, tuple) or len(held) != 2:
        return Refresh(in_hand=True)  # released a moment ago: the next request sees the result
    claimed_at, held_token = held
    if now - float(claimed_at) <= grace():
        return Refresh(in_hand=True)
    return Refresh(in_hand=False, overdue=str(held_token))


def enqueue_refresh(request: HttpRequest, page_id: int, name: str, token: str) -> bool:
    """Hand the re-render to a worker; False when it cannot be (the request renders it)."""
    from incidents.statuspage.refresh import request_facts
    from incidents.statuspage.tasks import refresh_page

    facts = request_facts(request)
    if facts is None:
        return False
    try:
        # No publish retries: a visitor is waiting, and rendering here is the fallback.
        refresh_page.apply_async(args=[page_id, name, token, facts], expires=LOCK_TTL, retry=False)
    except Exception:
        logger.exception("could not enqueue a status page refresh; rendering in the request")
        return False
    return True


def release_refresh(page_id: int, name: str, token: str) -> None:
    """Free a refresh claim if it is still `token`'s (a late task must not free a newer one).

    Read, then delete: not atomic, but a newer claim can only appear once this
    one is gone, so the window is the instant between the two round trips.
    """
    key = refresh_key(page_id, name)
    try:
        held = cache.get(key)
        if isinstance(held, tuple) and len(held) == 2 and held[1] == token:
            cache.delete(key)
    except Exception:
        logger.exception("could not release a status page refresh claim")


class Recent:
    """This process's copies of the latest entries, so a hit moves two tokens, not the page.

    An entry here is used only while its generations match the shared ones
    (read on every request), so it is exactly as fresh as the shared copy.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.entries: OrderedDict[str, Entry] = OrderedDict()

    def get(self, key: str) -> Entry | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None:
                self.entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: Entry) -> None:
        with self.lock:
            self.entries[key] = entry
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


_recent = Recent(RECENT_ENTRIES)


def clear_local() -> None:
    """Forget this process's copies (the host map and rendered entries)."""
    _local.clear()
    _recent.clear()


@receiver(setting_changed)
def cache_settings_changed(setting: str, **_: Any) -> None:
    # Another cache (tests swap them) holds other generations: local copies must go too.
    if setting == "CACHES":
        clear_local()


def read(key: str) -> Entry | None:
    try:
        entry = get_many([key]).get(key)
    except Exception:
        logger.exception("could not read a rendered status page")
        return None
    return entry if isinstance(entry, Entry) else None


def lock_key(page_id: int, name: str) -> str:
    return f"statuspage:lock:{page_id}:{name}"


def claim(page_id: int, name: str) -> bool:
    try:
        return bool(cache.add(lock_key(page_id, name), 1, timeout=LOCK_TTL))
    except Exception:
        return True


def release(page_id: int, name: str) -> None:
    try:
        cache.delete(lock_key(page_id, name))
    except Exception:
        logger.exception("could not release the status page render lock")


def store(
    page_id: int,
    name: str,
    gen: Any,
    page_gen: Any,
    response: HttpResponse,
    encoding: str,
    keep: bool = True,
) -> Entry:
    """Keep both encodings of a fresh render; returns the one this request asked for."""
    body = response.content
    etag = 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    common = {
        "gen": gen,
        "page_gen": page_gen,
        "born": time.time(),
        "status": response.status_code,
        "content_type": response["Content-Type"],
        "etag": etag,
        "cache_control": response.get("Cache-Control", ""),
    }
    entries = {"identity": Entry(body=body, gzipped=False, **common)}
    if len(body) >= GZIP_MIN_BYTES:
        packed = gzip.compress(body, compresslevel=6, mtime=0)
        entries["gzip"] = Entry(body=packed, gzipped=True, **common)
    else:
        entries["gzip"] = entries["identity"]
    try:
        # Kept well past the TTL: a stale entry is what visitors get while it is re-rendered.
        cache.set_many(
            {out_key(page_id, name, enc): e for enc, e in entries.items()}, timeout=ttl() * 10
        )
    except Exception:
        logger.exception("could not store a rendered status page")
    if keep:
        _recent.put(out_key(page_id, name, encoding), entries[encoding])
    return entries[encoding]


def respond(request: HttpRequest, entry: Entry) -> HttpResponse:
    if entry.etag in request.headers.get("If-None-Match", ""):
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = HttpResponse(entry.body, content_type=entry.content_type, status=entry.status)
        if entry.gzipped:
            response["Content-Encoding"] = "gzip"
    response["ETag"] = entry.etag
    response["Vary"] = "Accept-Encoding"
    if entry.cache_control:
        response["Cache-Control"] = entry.cache_control
    return response
