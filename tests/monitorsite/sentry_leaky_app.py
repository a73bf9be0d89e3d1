"""A view and a Celery task that fail with credentials in their messages and locals.

test_sentry.py runs this module in a subprocess with SENTRY_DSN pointing at a
loopback server, by calling `main()`. Neither the view nor the task touches the
database, so the subprocess needs no migrations.
"""

from __future__ import annotations

import wsgiref.util
from typing import Any

import django
from celery import shared_task
from django.http import HttpRequest, HttpResponse
from django.urls import path

# Every value a leak would expose; test_sentry.py checks none reaches Sentry.
DB_PASSWORD = "hunter2pass"
DSN = f"postgres://app:{DB_PASSWORD}@db.internal:5432/app"
SLACK_SECRET = "XXXXSECRET"
SLACK_WEBHOOK = f"https://hooks.slack.com/services/T000/B000/{SLACK_SECRET}"
BEARER_TOKEN = "abcdefSECRETtoken123"
QUERY_TOKEN = "qsSECRETvalue"
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawX"
DISCORD_SECRET = "discordSECRETpart"
DISCORD_WEBHOOK = f"https://discord.com/api/webhooks/1234/{DISCORD_SECRET}"
REDIS_PASSWORD = "redisSECRETpw"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0"
SECRETS = (
    DB_PASSWORD,
    SLACK_SECRET,
    BEARER_TOKEN,
    QUERY_TOKEN,
    TELEGRAM_TOKEN.split(":")[1],
    DISCORD_SECRET,
    REDIS_PASSWORD,
)

VIEW_PATH = "/probe-check/"


class ProbeViewError(RuntimeError):
    pass


class DeliveryTaskError(RuntimeError):
    pass


def failing_view(request: HttpRequest) -> HttpResponse:
    dsn = DSN
    webhook_url = SLACK_WEBHOOK
    # Names Sentry's own scrubber does not know: only Watchpost's text patterns catch these.
    upstream_header = request.headers["Authorization"]
    target = dsn
    alert_to = webhook_url
    raise ProbeViewError(
        f"probe of {target} failed for {request.get_full_path()} "
        f"with {upstream_header}; alerting {alert_to} now"
    )


urlpatterns = [path(VIEW_PATH.strip("/") + "/", failing_view)]


@shared_task(name="tests.sentry_leaky_app.failing_delivery")
def failing_delivery(cache_url: str) -> None:
    bot_url = f"https://api.telegram.org/bot{TELEGRAM_TOKEN}/sendMessage"
    fallback = DISCORD_WEBHOOK
    raise DeliveryTaskError(f"delivery to {bot_url} failed, then {fallback} ; cache {cache_url}")


def get_through_wsgi(path: str, query: str, headers: dict[str, str]) -> str:
    """GET `path` the way gunicorn would, returning the status line.

    django.test.Client skips the WSGI handler, and with it Sentry's WSGI
    middleware, which is what puts the URL, query string and headers into events.
    """
    from monitorsite.wsgi import application

    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query}
    environ.update({"HTTP_" + name.upper().replace("-", "_"): v for name, v in headers.items()})
    wsgiref.util.setup_testing_defaults(environ)
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    response = application(environ, start_response)
    b"".join(response)
    response.close()
    return statuses[0]


def main() -> None:
    django.setup()
    import sentry_sdk
    from django.test import override_settings

    if not sentry_sdk.get_client().is_active():
        raise SystemExit("Sentry did not start: is SENTRY_DSN set?")
    with override_settings(ROOT_URLCONF=__name__):
        status = get_through_wsgi(
            VIEW_PATH,
            f"token={QUERY_TOKEN}&page=2",
            {"Authorization": f"Bearer {BEARER_TOKEN}", "X-Probe-Target": DSN},
        )
    if not status.startswith("500"):
        raise SystemExit(f"the failing view answered {status}, not 500")
    result = failing_delivery.apply(kwargs={"cache_url": REDIS_URL})
    if not isinstance(result.result, DeliveryTaskError):
        raise SystemExit(f"the failing task ended with {result.result!r}")
    sentry_sdk.flush(timeout=10)
