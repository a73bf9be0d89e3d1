"""Subscribing to a status page: email double opt-in, signed webhooks, unsubscribing, limits."""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from incidents.models import PublicIncident, StatusPage, Subscriber
from incidents.statuspage import subscriptions, tasks
from incidents.statuspage.publishing import post_update
from tests.receivers import Receiver, Reply, SmtpServer

pytestmark = pytest.mark.django_db

HOST = "status.acme.test"
LINK = re.compile(r"https?://status\.acme\.test/[\w/.-]+/")


@pytest.fixture(autouse=True)
def status_host(settings: Any) -> None:
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, HOST]
    settings.SITE_URL = "https://watchpost.acme.test"
    settings.STATUS_PAGE_REFRESH_GRACE = 0  # changes show on the next request (no worker here)
    settings.DELIVERY_RETRY_BASE = 0.01
    # A key prefix of this test's own: the test Redis is shared with other runs.
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, tuple[Any, ...], Any]]]:
    """The status page's tasks run here, as a worker would run them (retries included)."""
    seen: list[tuple[str, tuple[Any, ...], Any]] = []
    for task in (tasks.announce_update, tasks.deliver_update, tasks.deliver_confirmation):

        def delay(*args: Any, _task: Any = task) -> None:
            result = _task.apply(args=args)
            seen.append((_task.name.rsplit(".", 1)[-1], args, result.result))

        monkeypatch.setattr(task, "delay", delay)
    yield seen


@pytest.fixture
def page() -> StatusPage:
    return StatusPage.objects.create(title="Acme status", host=HOST)


@pytest.fixture
def client() -> Client:
    return Client(HTTP_HOST=HOST)


@pytest.fixture
def csrf_client(client: Client) -> Client:
    """A browser: forms must carry their CSRF token."""
    strict = Client(enforce_csrf_checks=True, **client.defaults)
    return strict


def csrf_token(client: Client, path: str) -> str:
    response = client.get(path)
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', response.content)
    assert match, response.content
    return match[1].decode()


def post_form(client: Client, path: str, data: dict[str, str] | None = None) -> Any:
    """Fill in and submit the form on `path` as a browser does (token included)."""
    return client.post(path, {**(data or {}), "csrfmiddlewaretoken": csrf_token(client, path)})


def incident(page: StatusPage) -> PublicIncident:
    return PublicIncident.objects.create(page=page, title="Login errors", impact="major")


def verify(secret: str, body: bytes, header: str | None) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header)


def update(capture: Any, public: PublicIncident, status: str, body: str) -> None:
    """An admin posts an update; its notifications go out once it commits."""
    with capture(execute=True):
        post_update(public, status, body, "ann")


# --- Email ----------------------------------------------------------------------------------


def test_email_double_opt_in_from_subscribe_to_unsubscribe(
    page: StatusPage,
    csrf_client: Client,
    smtp_server: SmtpServer,
    ran: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post_form(csrf_client, "/subscribe/", {"email": "Ann@Example.COM"})
    assert response.status_code == 200
    assert b"Check your inbox" in response.content
    [mail] = smtp_server.wait_for(1)
    assert mail.recipients == ["Ann@example.com"]
    assert mail.message["Subject"].strip() == "[Acme status] Confirm your subscription"
    text = mail.message.get_body(("plain",)).get_content()
    [confirm_link] = [u for u in LINK.findall(text) if "/subscribe/confirm/" in u]
    assert confirm_link.startswith(f"https://{HOST}/subscribe/confirm/")
    subscriber = Subscriber.objects.get(page=page)
    assert subscriber.confirmed_at is None

    # Mail scanners open links: a GET shows a button and changes nothing.
    path = confirm_link.removeprefix(f"https://{HOST}")
    shown = csrf_client.get(path)
    assert shown.status_code == 200 and b"Confirm subscription" in shown.content
    subscriber.refresh_from_db()
    assert subscriber.confirmed_at is None
    public = incident(page)
    update(django_capture_on_commit_callbacks, public, "investigating", "Not for you yet.")
    assert len(smtp_server.received) == 1  # unconfirmed: nothing sent

    confirmed = post_form(csrf_client, path)
    assert confirmed.status_code == 302
    subscriber.refresh_from_db()
    assert subscriber.confirmed_at is not None
    assert b"You are subscribed" in csrf_client.get(path).content

    update(django_capture_on_commit_callbacks, public, "identified", "A bad <b>deploy</b>.")
    [_, news] = smtp_server.wait_for(2)
    assert news.recipients == ["Ann@example.com"]
    assert news.message["Subject"].strip() == "[Acme status] Login errors — Identified"
    text = news.message.get_body(("plain",)).get_content()
    html = news.message.get_body(("html",)).get_content()
    assert "A bad <b>deploy</b>." in text and "A bad &lt;b&gt;deploy&lt;/b&gt;." in html
    assert f"https://{HOST}/incidents/{public.pk}/" in text
    unsubscribe_link = f"https://{HOST}/unsubscribe/{subscriber.token}/"
    assert unsubscribe_link in text and unsubscribe_link in html
    assert news.message["List-Unsubscribe"].strip() == f"<{unsubscribe_link}>"

    path = unsubscribe_link.removeprefix(f"https://{HOST}")
    assert b"Unsubscribe" in csrf_client.get(path).content
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()  # GET changed nothing
    gone = post_form(csrf_client, path)
    assert gone.status_code == 200 and b"You are unsubscribed" in gone.content
    assert not Subscriber.objects.filter(pk=subscriber.pk).exists()

    update(django_capture_on_commit_callbacks, public, "resolved", "Fixed.")
    assert len(smtp_server.received) == 2


def test_an_address_already_subscribed_is_not_told_or_mailed_again(
    page: StatusPage,
    client: Client,
    smtp_server: SmtpServer,
    ran: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    Subscriber.objects.create(
        page=page, kind="email", email="ann@example.com", confirmed_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/subscribe/", {"email": "ann@example.com"})
    assert response.status_code == 200 and b"Check your inbox" in response.content
    assert ran == [] and Subscriber.objects.count() == 1


def test_a_confirmation_is_mailed_again_only_after_a_while(
    page: StatusPage,
    client: Client,
    smtp_server: SmtpServer,
    ran: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            client.post("/subscribe/", {"email": "ann@example.com"})
    assert len(smtp_server.wait_for(1)) == 1
    Subscriber.objects.update(created_at=timezone.now() - subscriptions.RESEND_AFTER)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/subscribe/", {"email": "ann@example.com"})
    smtp_server.wait_for(2)
    assert [name for name, _, _ in ran] == ["deliver_confirmation"] * 2
    assert Subscriber.objects.count() == 1


def test_one_click_unsubscribe_needs_no_form(page: StatusPage) -> None:
    subscriber = Subscriber.objects.create(page=page, kind="email", email="ann@example.com")
    # RFC 8058: the mail provider POSTs "List-Unsubscribe=One-Click", without a CSRF token.
    response = Client(enforce_csrf_checks=True).post(
        f"/unsubscribe/{subscriber.token}/", {"List-Unsubscribe": "One-Click"}, HTTP_HOST=HOST
    )
    assert response.status_code == 200
    assert not Subscriber.objects.exists()


def test_confirming_needs_the_forms_csrf_token(page: StatusPage, csrf_client: Client) -> None:
    subscriber = Subscriber.objects.create(page=page, kind="email", email="ann@example.com")
    confirm = f"/subscribe/confirm/{subscriber.token}/"
    assert csrf_client.post(confirm).status_code == 403
    subscriber.refresh_from_db()
    assert subscriber.confirmed_at is None
    assert Subscriber.objects.count() == 1


def test_the_cached_pages_subscribe_form_works_without_a_token(
    page: StatusPage,
    csrf_client: Client,
    smtp_server: SmtpServer,
    ran: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = csrf_client.post("/subscribe/", {"email": "bob@example.com"})
    assert response.status_code == 200
    # Still double opt-in: only a confirmation email, nothing subscribed yet.
    [subscriber] = Subscriber.objects.filter(email="bob@example.com")
    assert subscriber.confirmed_at is None
    assert len(smtp_server.wait_for(1)) == 1


def test_bad_input_is_refused_naming_the_field_and_escaped(
    page: StatusPage, client: Client
) -> None:
    hostile = '<script>alert("x")</script>'
    response = client.post("/subscribe/", {"email": hostile})
    assert response.status_code == 400
    assert b"email: enter an email address" in response.content
    assert b"<script>alert" not in response.content
    assert b"&lt;script&gt;" in response.content  # kept in the field, escaped
    both = client.post("/subscribe/", {"email": "a@example.com", "url": "https://x.example"})
    assert both.status_code == 400 and b"not both" in both.content
    assert not Subscriber.objects.exists()


def test_links_of_another_page_or_unknown_tokens_are_not_found(page: StatusPage) -> None:
    other = StatusPage.objects.create(title="Other", host="status.other.test")
    theirs = Subscriber.objects.create(page=other, kind="email", email="ann@example.com")
    client = Client(HTTP_HOST=HOST)
    assert client.get(f"/subscribe/confirm/{theirs.token}/").status_code == 404
    assert client.get(f"/unsubscribe/{uuid.uuid4()}/").status_code == 404
    assert client.get("/subscribe/confirm/not-a-token/").status_code == 404


def test_a_confirmation_link_expires_after_a_week(page: StatusPage, client: Client) -> None:
    old = Subscriber.objects.create(
        page=page, kind="email", email="ann@example.com",
        created_at=timezone.now() - timedelta(days=8),
    )  # fmt: skip
    response = client.post(f"/subscribe/confirm/{old.token}/")
    assert response.status_code == 410
    old.refresh_from_db()
    assert old.confirmed_at is None


def test_subscribing_is_rate_limited_per_address(page: StatusPage, client: Client) -> None:
    for n in range(subscriptions.SUBSCRIBE_LIMIT):
        assert client.post("/subscribe/", {"email": f"u{n}@example.com"}).status_code == 200
    limited = client.post("/subscribe/", {"email": "one-more@example.com"})
    assert limited.status_code == 429
    assert 0 < int(limited["Retry-After"]) <= subscriptions.SUBSCRIBE_WINDOW
    assert not Subscriber.objects.filter(email="one-more@example.com").exists()
    other = Client(HTTP_HOST=HOST, REMOTE_ADDR="2001:db8:1::1")
    assert other.post("/subscribe/", {"email": "else@example.com"}).status_code == 200


# --- Webhooks -------------------------------------------------------------------------------


def test_a_webhook_is_confirmed_by_a_signed_ping_and_gets_signed_updates(
    page: StatusPage,
    client: Client,
    receiver: Receiver,
    ran: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    url = receiver.url("/hooks/acme")
    response = client.post("/subscribe/", {"url": url})
    assert response.status_code == 201
    subscriber = Subscriber.objects.get(page=page)
    assert subscriber.kind == "webhook" and subscriber.confirmed_at is not None
    assert subscriber.secret.encode() in response.content  # shown once, here
    [ping] = receiver.wait_for(1)
    assert ping.json["meta"]["event"] == "subscription.confirmed"
    assert ping.header("X-Watchpost-Event") == "subscription.confirmed"
    assert verify(subscriber.secret, ping.body, ping.header("X-Watchpost-Signature"))

    public = incident(page)
    update(django_capture_on_commit_callbacks, public, "investigating", "Looking into it.")
    [_, hook] = receiver.wait_for(2)
    assert verify(subscriber.secret, hook.body, hook.header("X-Watchpost-Signature"))
    assert not verify("another-secret", hook.body, hook.header("X-Watchpost-Signature"))
    body = hook.json
    assert set(body) == {"meta", "page", "incident"}
    assert body["meta"]["unsubscribe"] == f"https://{HOST}/unsubscribe/{subscriber.token}/"
    assert body["page"]["id"] == str(page.pk)
    assert body["page"]["status_indicator"] == "major"
    assert body["incident"]["name"] == "Login errors"
    assert body["incident"]["status"] == "investigating"
    [first] = body["incident"]["incident_updates"]
    assert (first["status"], first["body"]) == ("investigating", "Looking into it.")

    # The receiver is gone: the subscription goes too, and nothing is retried.
    receiver.reply("/hooks/acme", Reply(410, "gone"))
    update(django_capture_on_commit_callbacks, public, "resolved", "Fixed.")
    assert not Subscriber.objects.exists()
    assert len(receiver.requests) == 3
    delivered = [result for name, _, result in ran if name == "deliver_update"]
    assert delivered == ["sent", "unsubscribed"]


def test_a_webhook_that_does_not_answer_2xx_is_not_subscribed(
    page: StatusPage, client: Client, receiver: Receiver
) -> None:
    receiver.reply("/hooks/broken", 500)
    response = client.post("/subscribe/", {"url": receiver.url("/hooks/broken")})
    assert response.status_code == 400
    assert b"url: the confirmation request failed" in response.content
    assert b"HTTP 500" in response.content
    assert not Subscriber.objects.exists()
    again = client.post("/subscribe/", {"url": receiver.url("/hooks/broken")})
    assert again.status_code == 201  # the receiver answers now


def test_a_webhook_url_already_subscribed_is_refused(
    page: StatusPage, client: Client, receiver: Receiver
) -> None:
    url = receiver.url("/hooks/acme")
    assert client.post("/subscribe/", {"url": url}).status_code == 201
    secret = Subscriber.objects.get().secret
    response = client.post("/subscribe/", {"url": url})
    assert response.status_code == 409 and b"url: already subscribed" in response.content
    assert secret.encode() not in response.content
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hooks",
        "http://localhost:9/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hooks",
        "ftp://example.com/hooks",
    ],
)
def test_webhooks_to_private_addresses_are_refused(
    page: StatusPage, client: Client, settings: Any, url: str
) -> None:
    settings.NOTIFY_ALLOW_PRIVATE = False
    response = client.post("/subscribe/", {"url": url})
    assert response.status_code == 400
    assert b"url: " in response.content
    assert not Subscriber.objects.exists()


def test_a_failing_subscriber_does_not_stop_the_others(
    page: StatusPage,
    receiver: Receiver,
    smtp_server: SmtpServer,
    ran: list[Any],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    now = timezone.now()
    broken = Subscriber.objects.create(
        page=page, kind="webhook", url=receiver.url("/hooks/broken"), confirmed_at=now
    )
    flaky = Subscriber.objects.create(
        page=page, kind="webhook", url=receiver.url("/hooks/flaky"), confirmed_at=now
    )
    Subscriber.objects.create(page=page, kind="email", email="ann@example.com", confirmed_at=now)
    refused = Subscriber.objects.create(
        page=page, kind="email", email="gone@example.com", confirmed_at=now
    )
    smtp_server.refused.add("gone@example.com")
    receiver.reply("/hooks/broken", *[500] * 10)
    receiver.reply("/hooks/flaky", 503, 200)

    update(django_capture_on_commit_callbacks, incident(page), "investigating", "Looking.")

    results = {args[0]: result for name, args, result in ran if name == "deliver_update"}
    assert results[broken.pk] == "failed"
    assert results[flaky.pk] == "sent"
    assert results[refused.pk] == "failed"  # refused for good: not retried
    attempts = settings.DELIVERY_MAX_ATTEMPTS
    assert len(receiver.to("/hooks/broken")) == attempts  # bounded retries
    assert len(receiver.to("/hooks/flaky")) == 2  # retried once, then delivered
    [mail] = smtp_server.wait_for(1)
    assert mail.recipients == ["ann@example.com"]
    assert Subscriber.objects.filter(pk=broken.pk).exists()  # a 5xx is not "gone"


def test_retries_back_off_exponentially_with_jitter(settings: Any) -> None:
    settings.DELIVERY_RETRY_BASE = 10
    for retries, ceiling in ((0, 10), (1, 20), (2, 40), (3, 80)):
        waits = {tasks.backoff(retries) for _ in range(20)}
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(waits) > 1
    settings.DELIVERY_MAX_ATTEMPTS = 50
    assert tasks.max_retries() == 5
