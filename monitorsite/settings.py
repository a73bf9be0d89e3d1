"""Watchpost settings, read from the environment (see README.md for every variable).

With nothing set, Watchpost runs on the embedded default: SQLite in WAL mode and
a filesystem broker under WATCHPOST_DATA_DIR. DATABASE_URL, CELERY_BROKER_URL
and REDIS_URL switch the same code to PostgreSQL and Redis.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from monitorsite.env import LOG_LEVELS, Env

env = Env()

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.str("WATCHPOST_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in DATA_DIR."""
    key = env.str("SECRET_KEY")
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("SECRET_KEY: must be at least 32 characters long")
        return key
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", False)

SITE_URL = env.url("SITE_URL", "http://127.0.0.1:8000", ("http", "https")).rstrip("/")
STATUS_PAGE_HOST = env.str("STATUS_PAGE_HOST", "").lower()
if STATUS_PAGE_HOST and ("/" in STATUS_PAGE_HOST or " " in STATUS_PAGE_HOST):
    raise ImproperlyConfigured(
        "STATUS_PAGE_HOST: expected a host name such as status.example.com, "
        f"got {STATUS_PAGE_HOST!r}"
    )
# ".localhost" is localhost and its subdomains: the demo status page is at status.localhost.
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["127.0.0.1", ".localhost", "[::1]"])
for _host in (urlsplit(SITE_URL).hostname, STATUS_PAGE_HOST):
    if _host and _host not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(_host)
CSRF_TRUSTED_ORIGINS = [SITE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "monitorsite",
    "checks",
    "alerts",
    "incidents",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "incidents.statuspage.middleware.StatusPageMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Heartbeat pings skip the rest: CSRF, auth, messages and framing do nothing for them.
    "checks.views.PingMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "monitorsite.urls"
WSGI_APPLICATION = "monitorsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------

DATABASE_URL = env.url(
    "DATABASE_URL",
    f"sqlite:///{DATA_DIR / 'watchpost.sqlite3'}",
    ("sqlite", "postgres", "postgresql", "pgsql"),
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets web, beat and workers read while one writes; IMMEDIATE takes the
    # write lock at BEGIN so two writers queue on busy_timeout instead of
    # failing with "database is locked" when a read transaction upgrades.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and shared state -------------------------------------------------

REDIS_URL = env.url("REDIS_URL", "", ("redis", "rediss"))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "watchpost",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
# A stale status page is re-rendered by a worker while visitors get the stale
# copy; a worker that has not done it within this many seconds (none running, a
# lost message) is overtaken by one request rendering it. 0: every stale page is
# rendered in the request, as one request at a time. Below the refresh claim's
# 30 s lifetime (incidents.statuspage.cache.LOCK_TTL), or the claim lapses first.
STATUS_PAGE_REFRESH_GRACE = env.float("STATUS_PAGE_REFRESH_GRACE", 5.0, 0.0, 20.0)

# --- Celery ------------------------------------------------------------------

CELERY_BROKER_URL = env.url(
    "CELERY_BROKER_URL", "filesystem://", ("filesystem", "redis", "rediss", "amqp")
)
EMBEDDED_BROKER = CELERY_BROKER_URL.startswith("filesystem://")
# Soft < hard time limit < broker visibility timeout: a task is stopped before
# the broker would hand its message to a second worker.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)
if not CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT < CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT < CELERY_VISIBILITY_TIMEOUT "
        f"must hold, got {CELERY_TASK_SOFT_TIME_LIMIT} / {CELERY_TASK_TIME_LIMIT} / "
        f"{CELERY_VISIBILITY_TIMEOUT}"
    )
if EMBEDDED_BROKER:
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT = "monitorsite.embedded_broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # The virtual transport polls; 1 s (kombu's default) would add up to a
        # second of latency to every task, 50 ms costs a few listdir calls.
        "polling_interval": 0.05,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        "socket_connect_timeout": 5,
        "health_check_interval": 25,
    }
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", 2, minimum=1)

# --- Sentry, logging, mail ----------------------------------------------------

SENTRY_DSN = env.url("SENTRY_DSN", "", ("http", "https"))
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", "production")
SENTRY_RELEASE = env.str("SENTRY_RELEASE", "")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", 0.0, 0.0, 1.0)

LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True)
LOG_FORMAT = env.choice("LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "monitorsite.logging.ContextFilter"}},
    "formatters": {
        "text": {"()": "monitorsite.logging.TextFormatter"},
        "json": {"()": "monitorsite.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
        # One line per system tick (every second) drowns the log; DEBUG shows them.
        "celery.beat": {"level": "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"},
        "celery.app.trace": {"level": "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"},
        "celery.worker.strategy": {"level": "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"},
    },
}

EMAIL_HOST = env.str("EMAIL_HOST", "")
EMAIL_PORT = env.int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", 10, minimum=1)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS / EMAIL_USE_SSL: set at most one of them")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "Watchpost <watchpost@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Without an SMTP host, mail is printed to the log instead of silently dropped.
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)

# The demo admin's password (`manage.py prepare`); generated once when unset.
WATCHPOST_ADMIN_PASSWORD = env.str("WATCHPOST_ADMIN_PASSWORD", "")

# --- Probes ---------------------------------------------------------------------

# Link-local (cloud metadata lives at 169.254.169.254 and fd00:ec2::254) and
# unspecified addresses are denied; private networks are allowed on purpose.
PROBE_DENY_NETWORKS = env.list(
    "PROBE_DENY_NETWORKS",
    ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "0.0.0.0/8", "::/128"],
)
PROBE_ALLOW_NETWORKS = env.list("PROBE_ALLOW_NETWORKS", [])
for _name, _nets in (
    ("PROBE_DENY_NETWORKS", PROBE_DENY_NETWORKS),
    ("PROBE_ALLOW_NETWORKS", PROBE_ALLOW_NETWORKS),
):
    for _net in _nets:
        try:
            ipaddress.ip_network(_net, strict=False)
        except ValueError as _exc:
            raise ImproperlyConfigured(f"{_name}: {_net!r} is not a network ({_exc})") from _exc
PROBE_BODY_LIMIT = env.int("PROBE_BODY_LIMIT", 1024 * 1024, minimum=1024)
# Probes one worker process runs at once.
PROBE_CONCURRENCY = env.int("PROBE_CONCURRENCY", 200, minimum=1)
# The dispatcher claims monitors due within this many seconds, so batches reach
# workers before their slots and probes start on the slot, not on the tick.
DISPATCH_LOOKAHEAD = env.float("DISPATCH_LOOKAHEAD", 2.0, 0.0, 30.0)
DISPATCH_MAX_PER_TICK = env.int("DISPATCH_MAX_PER_TICK", 20000, minimum=1)
PROBE_BATCH_SIZE = env.int("PROBE_BATCH_SIZE", 200, minimum=1)
# Heartbeat pings accepted per monitor key in each window; more get 429.
PING_RATE_LIMIT = env.int("PING_RATE_LIMIT", 60, minimum=1)
PING_RATE_WINDOW = env.int("PING_RATE_WINDOW", 60, minimum=1)
# Heartbeat pings skip Django's handler under gunicorn (checks.fastpath); off,
# they take the whole handler and middleware chain, with the same answers.
PING_FAST_PATH = env.bool("PING_FAST_PATH", True)
PROBE_USER_AGENT = env.str("PROBE_USER_AGENT", "Watchpost/0.1 (+uptime monitor)")
# What HTTP probes fetch with: `lean` (asyncio + httptools, checks/probes/httpclient.py;
# about half the CPU per request) or `aiohttp`. Both behave the same to users.
PROBE_HTTP_CLIENT = env.choice("PROBE_HTTP_CLIENT", "lean", ("lean", "aiohttp"))

# --- Health -------------------------------------------------------------------

HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", 3.0, 0.1, 30.0)
BEAT_STALE_AFTER = env.int("BEAT_STALE_AFTER", 10, minimum=2)
WORKER_STALE_AFTER = env.int("WORKER_STALE_AFTER", 30, minimum=5)
WORKER_HEARTBEAT_INTERVAL = 10
# Readiness fails when probes start this many seconds after their slot (p99).
FLEET_LAG_LIMIT = env.float("FLEET_LAG_LIMIT", 5.0, 0.1, 600.0)
# Raw probe results are kept this many days; hourly and daily rollups longer.
RESULT_RETENTION_DAYS = env.int("RESULT_RETENTION_DAYS", 7, minimum=1)
ROLLUP_RETENTION_DAYS = env.int("ROLLUP_RETENTION_DAYS", 400, minimum=1)
# When set, /metrics answers only requests with `Authorization: Bearer <token>`.
METRICS_TOKEN = env.str("METRICS_TOKEN", "")

# --- Incidents and paging --------------------------------------------------------

# A monitor failing again within this many seconds of its incident's resolution
# re-opens that incident instead of opening a new one.
INCIDENT_REOPEN_WINDOW = env.int("INCIDENT_REOPEN_WINDOW", 300, minimum=0)
# Acknowledge links in pages stay valid this long (seconds).
ACK_LINK_MAX_AGE = env.int("ACK_LINK_MAX_AGE", 7 * 24 * 3600, minimum=60)
# More incidents than this opening within a minute is a storm: each channel and
# person gets one grouped message for the rest of that minute, not one per incident.
STORM_THRESHOLD = env.int("STORM_THRESHOLD", 10, minimum=1)
# Attempts per notification before it is recorded as failed (backoff with jitter).
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", 5, minimum=1)
DELIVERY_RETRY_BASE = env.float("DELIVERY_RETRY_BASE", 10.0, 0.0, 3600.0)
NOTIFY_TIMEOUT = env.float("NOTIFY_TIMEOUT", 10.0, 0.5, 120.0)
# Notification URLs resolving to loopback, private or link-local addresses are
# refused unless this is on (for a chat server on your own network, or tests).
NOTIFY_ALLOW_PRIVATE = env.bool("NOTIFY_ALLOW_PRIVATE", False)
# Where the hosted services' APIs live (a setting so they can point at a proxy).
PAGERDUTY_EVENTS_URL = env.url(
    "PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue", ("http", "https")
)
TWILIO_API_URL = env.url("TWILIO_API_URL", "https://api.twilio.com", ("http", "https"))
TELEGRAM_API_URL = env.url("TELEGRAM_API_URL", "https://api.telegram.org", ("http", "https"))
# The Twilio account that texts contacts (an SMS channel may name its own).
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", "")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", "")

# --- JSON API (/api/v1/) ----------------------------------------------------------

# Staff only, by token (`manage.py api_token <username>`) or an admin session.
# The browsable API, which renders HTML forms, only in DEBUG.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        *(["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Watchpost API",
    "DESCRIPTION": "Monitors, their thresholds and manual evaluation; incidents (acknowledge, "
    "resolve, notes). "
    "Authenticate with `Authorization: Token <key>` (manage.py api_token <username>).",
    "VERSION": "1",
    # Separate request and response shapes, so read-only state is never
    # presented as input (what API fuzzers generate requests from).
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
}

# --- Web ----------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.timezone("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
CELERY_TIMEZONE = TIME_ZONE

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

_https = SITE_URL.startswith("https://")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", _https)
# The health and metrics endpoints are probed over plain HTTP from inside the
# deployment (load balancers, Prometheus), so they are never redirected.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$", r"^ping/"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 31536000 if _https else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", False)
# HSTS for every subdomain and browser preload lists bind the operator's whole
# domain (a status host is often one subdomain among many), so they are
# opt-in rather than defaults; Django's deploy check warns about both.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
