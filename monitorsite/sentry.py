"""Error tracking through Sentry, with secrets scrubbed before anything leaves.

Watchpost holds credentials by design (database DSNs of monitored services,
webhook URLs, bot tokens), and they reach exception messages and local
variables. `scrub_event` walks the whole event and masks them.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

MASK = "[Filtered]"

# Keys whose value is a secret whatever it looks like.
SECRET_KEYS = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|auth|authorization|cookie|dsn|"
    r"signature|webhook|credential|private[_-]?key|session",
    re.IGNORECASE,
)
# Secrets inside free text: a password in a URL, a bearer token, webhook URLs
# whose path is the credential, and well-known token shapes.
TEXT_PATTERNS = [
    (
        re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^\s:/@]*):(?P<pw>[^\s@/]+)@", re.I),
        r"\g<scheme>\g<user>:" + MASK + "@",
    ),
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[a-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    (re.compile(r"https://hooks\.slack\.com/\S+", re.I), MASK),
    (re.compile(r"https://(?:\w+\.)?discord(?:app)?\.com/api/webhooks/\S+", re.I), MASK),
    (re.compile(r"https://[\w.-]*webhook\.office\.com/\S+", re.I), MASK),
    (re.compile(r"(?i)(/bot)\d+:[\w-]{20,}"), r"\1" + MASK),
    (re.compile(r"\bxox[abposr]-[\w-]{10,}"), MASK),
    # `^` as well as ?/&: Sentry sends a request's query string without its "?".
    (
        re.compile(
            r"(?i)((?:^|[?&])(?:[a-z_]*token|[a-z_]*key|apikey|secret|password|passwd|pwd|auth|sig|signature)=)[^&\s#]+"
        ),
        r"\1" + MASK,
    ),
]


def scrub_text(text: str) -> str:
    for pattern, replacement in TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub(value: Any, key: str | None = None) -> Any:
    if key is not None and SECRET_KEYS.search(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: scrub(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # Sentry sends headers as [name, value] pairs in some places.
        if len(value) == 2 and isinstance(value[0], str) and SECRET_KEYS.search(value[0]):
            return [value[0], MASK]
        return [scrub(v) for v in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    return scrub(event)


def init_from_settings() -> bool:
    """Start Sentry when SENTRY_DSN is set; returns whether it was started."""
    if not settings.SENTRY_DSN:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=settings.SENTRY_DSN,
        environment=settings.SENTRY_ENVIRONMENT,
        release=settings.SENTRY_RELEASE or None,
        traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
        integrations=[DjangoIntegration(), CeleryIntegration(monitor_beat_tasks=False)],
        send_default_pii=False,
        before_send=scrub_event,
        before_send_transaction=scrub_event,
    )
    return True
