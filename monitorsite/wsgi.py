"""The WSGI application gunicorn serves: Django's, with heartbeat pings on a fast path."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitorsite.settings")

django_application = get_wsgi_application()

from checks.fastpath import PingFastPath  # noqa: E402 (it needs the apps loaded)

# Middleware listed before PingMiddleware that does nothing for a ping URL, so
# the fast path leaves it out: the status page router never routes /ping/
# (UNROUTED_PATHS), whitenoise serves only static files, and sessions act only
# on a request with a session cookie, which the fast path hands to Django.
PASSIVE_FOR_PINGS = (
    "incidents.statuspage.middleware.StatusPageMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
)

application = PingFastPath(django_application, passive=PASSIVE_FOR_PINGS)
