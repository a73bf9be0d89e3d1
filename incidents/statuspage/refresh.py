"""Re-rendering a stale status page in a worker, by replaying the request that found it stale.

Any response wrapped in `cached_response` (the page, an incident, a history
page, the feeds, the API, the badges) can go stale, and each view knows how
to build its own. So rather than a registry of renderers, the web process
hands the worker the few facts of the request (host, path, query string,
whether it came over HTTPS), and the worker runs them through Django's own
WSGIHandler with `cache.refreshing` set: the same middleware routes the host
to the page, the same view validates its input and renders, and
`cached_response` stores the result instead of serving the stale copy.
`routes_to` and `refreshing` are the only differences from a visitor's request.

The facts come from a message, so they are checked again here: bounded
sizes, and a host that routes to the page the task names (never the admin's
site, a ping or a health probe). A replay is a GET, with no cookie and no
credential: nothing it could reach acts on one.
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_script_name
from django.http import HttpResponse
from django.urls import get_script_prefix, set_script_prefix, set_urlconf

from incidents.statuspage.cache import refreshing

logger = logging.getLogger(__name__)

# The WSGI values replayed, and the longest each may be: a page's own URLs are short,
# and a longer request is rendered where it arrived instead (see cache.enqueue_refresh).
LIMITS = {"host": 255, "script": 255, "path": 512, "query": 512}
USER_AGENT = "Watchpost status page refresh"


def request_facts(request: Any) -> dict[str, Any] | None:
    """What a worker needs to replay `request`, JSON-ready; None when it is too long."""
    meta = request.META
    facts: dict[str, Any] = {
        # get_host(): ALLOWED_HOSTS-checked, and X-Forwarded-Host already applied if trusted.
        "host": request.get_host(),
        "script": meta.get("SCRIPT_NAME", ""),
        "path": meta.get("PATH_INFO", "/"),
        "query": meta.get("QUERY_STRING", ""),
        "secure": request.is_secure(),
    }
    if any(len(facts[name]) > limit for name, limit in LIMITS.items()):
        return None
    return facts


def valid(facts: Any) -> bool:
    if not isinstance(facts, dict) or set(facts) != {*LIMITS, "secure"}:
        return False
    if not isinstance(facts["secure"], bool):
        return False
    return all(isinstance(facts[n], str) and len(facts[n]) <= m for n, m in LIMITS.items())


def environ_for(facts: dict[str, Any]) -> dict[str, Any]:
    scheme = "https" if facts["secure"] else "http"
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": facts["script"],
        "PATH_INFO": facts["path"],
        "QUERY_STRING": facts["query"],
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "443" if facts["secure"] else "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": facts["host"],
        "HTTP_USER_AGENT": USER_AGENT,
        # The scheme as the visitor's request had it: behind a proxy, Django read it
        # from SECURE_PROXY_SSL_HEADER; here it is the WSGI scheme, which Django falls
        # back to when that header is absent. So SECURE_SSL_REDIRECT answers the same.
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def routes_to(request: WSGIRequest, page_id: int) -> bool:
    """Whether the status page middleware sends this request to page `page_id`."""
    from incidents.statuspage.middleware import StatusPageMiddleware

    router = StatusPageMiddleware(lambda request: HttpResponse())  # only its routing is used
    try:
        site = router.route(request)
    except DisallowedHost:
        return False
    return site is not None and site.id == page_id


class Handler:
    """One WSGIHandler per worker process, built on first use (it loads the middleware)."""

    handler: WSGIHandler | None = None

    @classmethod
    def get(cls) -> WSGIHandler:
        if cls.handler is None:
            cls.handler = WSGIHandler()
        return cls.handler


def replay(page_id: int, facts: Any) -> str:
    """Run the request described by `facts` so its stale entry is rendered and stored.

    Returns what happened, for the task's log line: the status code, or why not.
    """
    if not valid(facts):
        logger.warning("status page refresh refused: malformed request facts")
        return "refused"
    environ = environ_for(facts)
    request = WSGIRequest(environ)
    if not routes_to(request, page_id):
        logger.warning(
            "status page refresh refused: %r is not status page %s here (ALLOWED_HOSTS?)",
            facts["host"],
            page_id,
        )
        return "refused"
    token = refreshing.set(True)
    prefix = get_script_prefix()
    try:
        set_script_prefix(get_script_name(environ))
        # The handler's middleware and views, without WSGIHandler.__call__'s
        # request_started/finished: they would close this thread's database
        # connection, which in a worker is Celery's to manage around each task.
        response = Handler.get().get_response(WSGIRequest(environ))
    finally:
        refreshing.reset(token)
        # The handler leaves this thread on the public URLconf and the request's script
        # prefix; the worker's other tasks reverse the admin's URLs.
        set_urlconf(None)
        set_script_prefix(prefix)
    return str(response.status_code)
