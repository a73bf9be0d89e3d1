"""Subscribing to a status page: email with double opt-in, or a signed webhook.

Mail scanners open links, so the links in our emails only show a button:
confirming and unsubscribing happen on POST. An email subscription is
confirmed by its owner clicking; a webhook receiver cannot click, so it is
confirmed by answering a signed "subscription confirmed" request with 2xx,
and the page then shows its signing secret, once.

The subscribe form never tells whether an address is already subscribed
(anyone may type anyone's address), and each address is limited in how
often it may try (SUBSCRIBE_LIMIT per hour).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from alerts.transports.base import TransportError, url_problem
from alerts.transports.http import resolve
from incidents.models import StatusPage, Subscriber
from incidents.statuspage import publishing
from incidents.statuspage.pages import page_for, public_url

logger = logging.getLogger(__name__)

SUBSCRIBE_LIMIT = 10  # attempts per client address and page, per window
SUBSCRIBE_WINDOW = 3600  # seconds
CONFIRM_WITHIN = timedelta(days=7)
# A confirmation is mailed again to the same address only after this long, so
# the form cannot be used to flood someone's inbox from many client addresses.
RESEND_AFTER = timedelta(minutes=10)
EMAIL_LIMIT = 254
URL_LIMIT = 500
TEMPLATES = "incidents/subscribe"


class Refused(ValueError):
    """Input we will not subscribe; the message names the field."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --- The state changes ----------------------------------------------------------------


def clean_email(value: str) -> str:
    value = value.strip()
    if len(value) > EMAIL_LIMIT:
        raise Refused(f"email: at most {EMAIL_LIMIT} characters")
    try:
        validate_email(value)
    except ValidationError:
        raise Refused("email: enter an email address such as name@example.com") from None
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def subscribe_email(page: StatusPage, value: str) -> None:
    """Start (or restart) a double opt-in; the confirmation mail goes out after commit.

    An address already confirmed, or mailed a confirmation moments ago, gets
    nothing, and the caller is not told.
    """
    email = clean_email(value)
    with transaction.atomic():
        subscriber = (
            Subscriber.objects.select_for_update().filter(page=page, email__iexact=email).first()
        )
        now = timezone.now()
        if subscriber is not None and (
            subscriber.confirmed_at is not None or subscriber.created_at > now - RESEND_AFTER
        ):
            return
        if subscriber is None:
            try:
                with transaction.atomic():
                    subscriber = Subscriber.objects.create(
                        page=page, kind=Subscriber.Kind.EMAIL, email=email
                    )
            except IntegrityError:
                return  # the same address, at the same moment, from another request
        else:
            subscriber.created_at = now  # a fresh week to confirm in
            subscriber.save(update_fields=["created_at"])
        transaction.on_commit(partial(enqueue_confirmation, subscriber.pk), robust=True)


def enqueue_confirmation(subscriber_id: int) -> None:
    from incidents.statuspage import tasks

    tasks.deliver_confirmation.delay(subscriber_id)


def clean_url(value: str) -> str:
    value = value.strip()
    if len(value) > URL_LIMIT:
        raise Refused(f"url: at most {URL_LIMIT} characters")
    if problem := url_problem(value):
        raise Refused(f"url: {problem}")
    parts = urlsplit(value)
    try:
        ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        # A name: where it points is checked now, and again on every send.
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            resolve(parts.hostname or "", port, "webhook")
        except TransportError as exc:
            raise Refused(f"url: {exc.message.removeprefix('webhook: ')}") from None
    return value


def subscribe_webhook(page: StatusPage, value: str) -> Subscriber:
    """Subscribe a webhook if it answers the signed confirmation request with 2xx."""
    url = clean_url(value)
    if Subscriber.objects.filter(page=page, url=url).exists():
        raise Refused(
            "url: already subscribed; to start again, unsubscribe with the link in "
            "any notification it received (meta.unsubscribe)",
            status=409,
        )
    try:
        subscriber = Subscriber.objects.create(page=page, kind=Subscriber.Kind.WEBHOOK, url=url)
    except IntegrityError:
        raise Refused("url: already subscribed", status=409) from None
    try:
        publishing.ping(subscriber)
    except TransportError as exc:
        subscriber.delete()
        raise Refused(f"url: the confirmation request failed ({exc.message})") from None
    subscriber.confirmed_at = timezone.now()
    subscriber.save(update_fields=["confirmed_at"])
    logger.info("webhook subscriber %s added to status page %s", subscriber.pk, page.pk)
    return subscriber


# --- Rate limit -----------------------------------------------------------------------


def over_limit(request: HttpRequest, page: StatusPage) -> int | None:
    """Seconds to wait if this client used up its attempts; None when it may try.

    A fixed window counted in the cache; a cache failure lets the attempt through.
    """
    now = time.time()
    slot = int(now // SUBSCRIBE_WINDOW)
    key = f"status-subscribe:{page.pk}:{request.META.get('REMOTE_ADDR', '')}:{slot}"
    try:
        cache.add(key, 0, timeout=SUBSCRIBE_WINDOW * 2)
        count = cache.incr(key)
    except Exception:
        logger.warning("subscribe rate limiter unavailable", exc_info=True)
        return None
    if count <= SUBSCRIBE_LIMIT:
        return None
    return max(1, math.ceil((slot + 1) * SUBSCRIBE_WINDOW - now))


# --- Views ----------------------------------------------------------------------------


def form_page(
    request: HttpRequest, page: StatusPage, status: int = 200, **context: Any
) -> HttpResponse:
    data = {"page": page, "email": "", "url": "", "error": "", **context}
    return render(request, f"{TEMPLATES}/form.html", data, status=status)


# No CSRF token: the status page's subscribe form lives in cached bytes shared by
# every visitor, so it cannot carry one. A forged POST can only ask for a
# confirmation email (double opt-in, rate-limited); it changes nothing else.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    page = page_for(request)
    if request.method == "GET":
        return form_page(request, page)
    wait = over_limit(request, page)
    if wait is not None:
        response = render(
            request, f"{TEMPLATES}/limited.html", {"page": page, "minutes": math.ceil(wait / 60)},
            status=429,
        )  # fmt: skip
        response["Retry-After"] = str(wait)
        return response
    email, url = request.POST.get("email", ""), request.POST.get("url", "")
    typed = {"email": email[: EMAIL_LIMIT + 50], "url": url[: URL_LIMIT + 50]}
    try:
        if email.strip() and url.strip():
            raise Refused("email: give an email address or a webhook URL, not both")
        if url.strip():
            subscriber = subscribe_webhook(page, url)
            return webhook_page(request, page, subscriber)
        subscribe_email(page, email)
    except Refused as refused:
        return form_page(request, page, refused.status, error=str(refused), **typed)
    return render(request, f"{TEMPLATES}/check_inbox.html", {"page": page, "email": email})


def webhook_page(request: HttpRequest, page: StatusPage, subscriber: Subscriber) -> HttpResponse:
    context = {
        "page": page,
        "subscriber": subscriber,
        "unsubscribe_url": public_url(page, "status-unsubscribe", token=subscriber.token),
    }
    return render(request, f"{TEMPLATES}/webhook_created.html", context, status=201)


def find(page: StatusPage, token: Any, **filters: Any) -> Subscriber | None:
    return Subscriber.objects.filter(page=page, token=token, **filters).first()


def invalid(request: HttpRequest, page: StatusPage) -> HttpResponse:
    return render(request, f"{TEMPLATES}/invalid.html", {"page": page}, status=404)


@never_cache
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: Any) -> HttpResponse:
    """GET shows a button; POST confirms (mail scanners open links, they do not post)."""
    page = page_for(request)
    subscriber = find(page, token, kind=Subscriber.Kind.EMAIL)
    if subscriber is None:
        return invalid(request, page)
    expired = not subscriber.confirmed_at and (
        subscriber.created_at < timezone.now() - CONFIRM_WITHIN
    )
    if expired:
        return render(request, f"{TEMPLATES}/expired.html", {"page": page}, status=410)
    if request.method == "POST":
        Subscriber.objects.filter(pk=subscriber.pk, confirmed_at__isnull=True).update(
            confirmed_at=timezone.now()
        )
        return redirect(request.path)  # post/redirect/get: a reload does not post again
    context = {"page": page, "subscriber": subscriber}
    return render(request, f"{TEMPLATES}/confirm.html", context)


# One-click unsubscribe (RFC 8058) posts without a form, so no CSRF token: the
# unguessable token in the URL is what proves the request may act.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: Any) -> HttpResponse:
    """GET shows a button; POST removes the subscription (and says so again if repeated)."""
    page = page_for(request)
    subscriber = find(page, token)
    if request.method == "POST":
        if subscriber is not None:
            pk = subscriber.pk
            subscriber.delete()
            logger.info("status subscriber %s unsubscribed", pk)
        return render(request, f"{TEMPLATES}/unsubscribed.html", {"page": page})
    if subscriber is None:
        return invalid(request, page)
    shown = subscriber.email or (urlsplit(subscriber.url).hostname or "")
    context = {"page": page, "subscriber": subscriber, "shown": shown}
    return render(request, f"{TEMPLATES}/unsubscribe.html", context)
