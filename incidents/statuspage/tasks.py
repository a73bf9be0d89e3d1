"""Celery tasks of the status page: thin wrappers over publishing and refresh.

Celery's autodiscovery finds `incidents.tasks` only; that module imports this
one so the worker registers these tasks.

Deliveries retry only a temporary TransportError (a server down, a 5xx, a
timeout), at most DELIVERY_MAX_ATTEMPTS times in all and never more than 5
retries, with exponential backoff and jitter. Permanent failures are settled
in publishing (logged; a webhook that answers 404/410 is unsubscribed).
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from alerts.transports.base import TransportError
from incidents.statuspage import cache, publishing, refresh

logger = logging.getLogger(__name__)

MAX_RETRIES = 5
MAX_BACKOFF = 3600.0
# A send waits at most NOTIFY_TIMEOUT per address tried (and EMAIL_TIMEOUT for
# mail); the limits stop a stuck send well before the broker redelivers.
SOFT_LIMIT = int(3 * float(settings.NOTIFY_TIMEOUT) + 30)
HARD_LIMIT = SOFT_LIMIT + 15
# A render takes well under a second; stop one long before its claim (cache.LOCK_TTL)
# lapses and a second worker could be handed the same page.
REFRESH_SOFT_LIMIT = cache.LOCK_TTL - 10
REFRESH_HARD_LIMIT = cache.LOCK_TTL - 5


def max_retries() -> int:
    return max(0, min(int(settings.DELIVERY_MAX_ATTEMPTS) - 1, MAX_RETRIES))


def backoff(retries: int) -> float:
    """Seconds before retry number `retries + 1`: doubling from DELIVERY_RETRY_BASE, jittered."""
    ceiling = min(float(settings.DELIVERY_RETRY_BASE) * 2**retries, MAX_BACKOFF)
    return random.uniform(ceiling / 2, ceiling)


def retry_or_give_up(task: Task, exc: TransportError, what: str) -> str:
    retries = task.request.retries or 0
    if retries >= max_retries():
        logger.warning("%s failed after %s attempts: %s", what, retries + 1, exc.message)
        return "failed"
    raise task.retry(exc=exc, countdown=backoff(retries), max_retries=max_retries())


@shared_task(ignore_result=True)
def announce_update(update_id: int) -> int:
    """Queue a public update for every confirmed subscriber of its page."""
    return publishing.announce(update_id)


@shared_task(bind=True, ignore_result=True, soft_time_limit=SOFT_LIMIT, time_limit=HARD_LIMIT)
def deliver_update(self: Any, subscriber_id: int, update_id: int) -> str:
    """Send one public update to one subscriber (email or signed webhook)."""
    try:
        return publishing.deliver_update(subscriber_id, update_id)
    except TransportError as exc:
        return retry_or_give_up(self, exc, f"update {update_id} to subscriber {subscriber_id}")


@shared_task(bind=True, ignore_result=True, soft_time_limit=SOFT_LIMIT, time_limit=HARD_LIMIT)
def deliver_confirmation(self: Any, subscriber_id: int) -> str:
    """Mail the double opt-in link to a new email subscriber."""
    try:
        return publishing.deliver_confirmation(subscriber_id)
    except TransportError as exc:
        return retry_or_give_up(self, exc, f"confirmation to subscriber {subscriber_id}")


@shared_task(ignore_result=True, soft_time_limit=REFRESH_SOFT_LIMIT, time_limit=REFRESH_HARD_LIMIT)
def refresh_page(page_id: int, name: str, claim: str, facts: dict[str, Any]) -> str:
    """Render one stale status page response in this worker (see incidents.statuspage.refresh).

    Enqueued with `expires` = the claim's lifetime: a message older than its
    claim is dropped, since a request has rendered the page by then. The claim
    is freed however the render ends, so the next change is refreshed at once.
    """
    try:
        return refresh.replay(page_id, facts)
    finally:
        cache.release_refresh(page_id, str(name), str(claim))
