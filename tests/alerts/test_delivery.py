"""Delivery of notification rows: sent once, retried with backoff, rate limited, flagged, logged."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection

from alerts import delivery
from alerts.models import Channel, Contact, DeliveryAttempt, Notification
from alerts.signals import notification_finished
from alerts.tasks import deliver_notification, sweep_notifications
from alerts.transports import TRANSPORTS
from alerts.transports.base import Transport
from tests.alerts.conftest import ACK_URL, Enqueued
from tests.receivers import Receiver, Reply, SmtpServer
from tests.targets import closed_port

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
HOOK = "/hooks/ops"
Status = Notification.Status
MakeChannel = Callable[..., Channel]
MakeNotification = Callable[..., Notification]


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def finished() -> Iterator[list[Notification]]:
    """Rows announced by notification_finished, as the incidents app hears them."""
    heard: list[Notification] = []

    def listen(notification: Notification, **_: Any) -> None:
        heard.append(notification)

    notification_finished.connect(listen)
    yield heard
    notification_finished.disconnect(listen)


def webhook(
    make_channel: MakeChannel, receiver: Receiver, path: str = HOOK, **fields: Any
) -> Channel:
    return make_channel("webhook", {"url": receiver.url(path)}, **fields)


def attempts(row: Notification) -> list[tuple[int, bool, str]]:
    return list(row.delivery_attempts.values_list("number", "ok", "error"))


# --- Sent once ----------------------------------------------------------------------------------


def test_it_sends_once_when_the_task_runs_twice(
    receiver: Receiver, make_channel: MakeChannel, make_notification: MakeNotification
) -> None:
    row = make_notification(webhook(make_channel, receiver))
    assert deliver_notification(row.pk) == "sent"
    assert deliver_notification(row.pk) == "sent"
    assert len(receiver.to(HOOK)) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == (Status.SENT, 1, "")
    assert row.sent_at is not None
    assert attempts(row) == [(1, True, "")]


@pytest.mark.django_db(transaction=True)
def test_it_sends_once_when_two_workers_race(
    receiver: Receiver, make_channel: MakeChannel, make_notification: MakeNotification
) -> None:
    row = make_notification(webhook(make_channel, receiver))
    receiver.reply(HOOK, Reply(200, "ok", delay=0.3))
    outcomes: list[str] = []

    def worker() -> None:
        try:
            outcomes.append(delivery.deliver(row.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    # The loser saw the row 'sending' (or already 'sent'); either way it sent nothing.
    assert "sent" in outcomes and set(outcomes) <= {"sending", "sent"} and len(outcomes) == 2
    assert len(receiver.to(HOOK)) == 1


def test_it_reports_a_missing_row() -> None:
    assert delivery.deliver(987654) == "missing"


def test_it_cancels_a_notification_of_a_disabled_channel(
    receiver: Receiver, make_channel: MakeChannel, make_notification: MakeNotification
) -> None:
    row = make_notification(webhook(make_channel, receiver, enabled=False))
    assert delivery.deliver(row.pk) == "cancelled"
    row.refresh_from_db()
    assert (row.status, row.last_error) == (Status.CANCELLED, "the channel is disabled")
    assert receiver.requests == []


def test_it_waits_for_not_before(
    receiver: Receiver, clock: Any, make_channel: MakeChannel, make_notification: MakeNotification
) -> None:
    row = make_notification(webhook(make_channel, receiver), not_before=T0 + timedelta(minutes=5))
    assert delivery.deliver(row.pk) == "pending"
    clock.shift(timedelta(minutes=5))
    assert delivery.deliver(row.pk) == "sent"


# --- Retries ------------------------------------------------------------------------------------


def test_it_retries_a_failing_service_with_backoff_then_fails(
    receiver: Receiver,
    clock: Any,
    settings: Any,
    make_channel: MakeChannel,
    make_notification: MakeNotification,
    finished: list[Notification],
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.DELIVERY_MAX_ATTEMPTS, settings.DELIVERY_RETRY_BASE = 3, 10
    receiver.reply(HOOK, 500, 500, 500)
    row = make_notification(webhook(make_channel, receiver))

    assert delivery.deliver(row.pk) == "retry"
    row.refresh_from_db()
    assert row.attempts == 1 and row.last_error == "webhook answered HTTP 500: scripted 500"
    assert T0 + timedelta(seconds=5) <= row.not_before <= T0 + timedelta(seconds=10)
    assert delivery.deliver(row.pk) == "retry"  # not due yet: nothing sent
    assert len(receiver.requests) == 1

    clock.shift(timedelta(seconds=10))
    assert delivery.deliver(row.pk) == "retry"
    row.refresh_from_db()
    wait = row.not_before - (T0 + timedelta(seconds=10))
    assert timedelta(seconds=10) <= wait <= timedelta(seconds=20)

    clock.shift(timedelta(seconds=20))
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.deliver(row.pk) == "failed"
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.FAILED, 3)
    assert row.last_error == "webhook answered HTTP 500: scripted 500"
    assert [(n, ok) for n, ok, _ in attempts(row)] == [(1, False), (2, False), (3, False)]
    assert len(receiver.requests) == 3
    assert [(n.pk, n.status) for n in finished] == [(row.pk, Status.FAILED)]
    row.channel.refresh_from_db()
    assert row.channel.flagged_at is None  # a flaky service is not a broken config


def test_it_schedules_the_retry_after_commit(
    receiver: Receiver,
    clock: Any,
    make_channel: MakeChannel,
    make_notification: MakeNotification,
    enqueued: Enqueued,
    django_capture_on_commit_callbacks: Any,
) -> None:
    receiver.reply(HOOK, 503)
    row = make_notification(webhook(make_channel, receiver))
    with django_capture_on_commit_callbacks(execute=True):
        delivery.deliver(row.pk)
    row.refresh_from_db()
    [(pk, countdown)] = enqueued.calls
    assert pk == row.pk and countdown == (row.not_before - T0).total_seconds()


def test_it_fails_at_once_and_flags_the_channel_on_410(
    receiver: Receiver,
    clock: Any,
    make_channel: MakeChannel,
    make_notification: MakeNotification,
    finished: list[Notification],
    django_capture_on_commit_callbacks: Any,
) -> None:
    channel = webhook(make_channel, receiver)
    receiver.reply(HOOK, Reply(410, "channel_is_archived"))
    row = make_notification(channel)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.deliver(row.pk) == "failed"
    row.refresh_from_db()
    channel.refresh_from_db()
    assert (row.status, row.attempts) == (Status.FAILED, 1)
    assert channel.flagged_at == T0
    assert channel.flagged_reason == "webhook answered HTTP 410: channel_is_archived"
    assert [n.status for n in finished] == [Status.FAILED]

    # Fixed on the other side: the next success clears the flag.
    assert delivery.deliver(make_notification(channel).pk) == "sent"
    channel.refresh_from_db()
    assert (channel.flagged_at, channel.flagged_reason) == (None, "")


def test_it_counts_a_transport_bug_as_a_temporary_failure(
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    make_channel: MakeChannel,
    make_notification: MakeNotification,
) -> None:
    class Broken(Transport):
        kind = "teams"

        def send(self, destination: Any, message: Any) -> None:
            raise ZeroDivisionError("secret https://hooks.example.com/token")

    monkeypatch.setitem(TRANSPORTS, "teams", Broken)
    row = make_notification(make_channel("teams", {"url": receiver.url("/teams/x")}))
    assert delivery.deliver(row.pk) == "retry"
    row.refresh_from_db()
    assert row.last_error == "unexpected ZeroDivisionError in the teams transport"


def test_a_broken_channel_does_not_stop_the_others(
    receiver: Receiver, make_channel: MakeChannel, make_notification: MakeNotification
) -> None:
    down = make_channel("slack", {"url": f"http://127.0.0.1:{closed_port()}/slack/x"})
    failing = webhook(make_channel, receiver, "/hooks/failing")
    working = webhook(make_channel, receiver, "/hooks/working")
    receiver.reply("/hooks/failing", 500)
    rows = [make_notification(channel) for channel in (down, failing, working)]
    assert [delivery.deliver(row.pk) for row in rows] == ["retry", "retry", "sent"]
    assert len(receiver.to("/hooks/working")) == 1
    rows[0].refresh_from_db()
    assert rows[0].last_error == "Slack: could not connect to 127.0.0.1 (Connection refused)"


def test_a_test_notification_is_tried_once(receiver: Receiver, make_channel: MakeChannel) -> None:
    receiver.reply(HOOK, 500)
    [row] = delivery.send_test(channel=webhook(make_channel, receiver))
    assert (row.status, row.attempts) == (Status.FAILED, 1)


# --- Rate limit ---------------------------------------------------------------------------------


def test_it_holds_what_exceeds_the_rate_limit_until_the_next_minute(
    receiver: Receiver,
    clock: Any,
    make_channel: MakeChannel,
    make_notification: MakeNotification,
    enqueued: Enqueued,
    django_capture_on_commit_callbacks: Any,
) -> None:
    channel = webhook(make_channel, receiver, rate_limit=20)
    rows = [make_notification(channel) for _ in range(30)]
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = [delivery.deliver(row.pk) for row in rows]
    assert outcomes == ["sent"] * 20 + ["pending"] * 10
    assert len(receiver.requests) == 20
    held = Notification.objects.filter(status=Status.PENDING)
    assert set(held.values_list("not_before", flat=True)) == {T0 + timedelta(seconds=60)}
    assert set(held.values_list("attempts", flat=True)) == {0}
    assert enqueued.calls == [(row.pk, 60.0) for row in rows[20:]]

    clock.shift(timedelta(seconds=59))
    assert delivery.deliver(rows[20].pk) == "pending"
    clock.shift(timedelta(seconds=1))
    assert [delivery.deliver(row.pk) for row in rows[20:]] == ["sent"] * 10
    assert len(receiver.requests) == 30


def test_the_rate_limit_is_per_channel(
    receiver: Receiver, make_channel: MakeChannel, make_notification: MakeNotification
) -> None:
    busy = webhook(make_channel, receiver, "/hooks/busy", rate_limit=1)
    quiet = webhook(make_channel, receiver, "/hooks/quiet", rate_limit=1)
    assert delivery.deliver(make_notification(busy).pk) == "sent"
    assert delivery.deliver(make_notification(busy).pk) == "pending"
    assert delivery.deliver(make_notification(quiet).pk) == "sent"


# --- Scheduling and the sweep ---------------------------------------------------------------------


def test_it_enqueues_on_commit_with_a_countdown_and_leaves_far_rows_to_the_sweep(
    clock: Any,
    make_channel: MakeChannel,
    make_notification: MakeNotification,
    enqueued: Enqueued,
    django_capture_on_commit_callbacks: Any,
) -> None:
    channel = make_channel("slack", {"url": "https://hooks.slack.com/x"})
    now = make_notification(channel)
    soon = make_notification(channel, not_before=T0 + timedelta(minutes=2))
    later = make_notification(channel, not_before=T0 + timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        delivery.schedule([now.pk, soon.pk, later.pk])
    assert enqueued.calls == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert sorted(enqueued.calls) == sorted([(now.pk, 0.0), (soon.pk, 120.0)])

    clock.shift(timedelta(hours=1))
    assert delivery.due_ids() == [now.pk, soon.pk, later.pk]


def test_it_resends_a_row_whose_worker_died_mid_send(
    clock: Any,
    settings: Any,
    make_channel: MakeChannel,
    make_notification: MakeNotification,
    enqueued: Enqueued,
    finished: list[Notification],
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.NOTIFY_TIMEOUT, settings.DELIVERY_MAX_ATTEMPTS = 10, 3
    channel = make_channel("slack", {"url": "https://hooks.slack.com/x"})
    lost = make_notification(channel, status=Status.SENDING, attempts=1, not_before=T0)
    out_of_tries = make_notification(channel, status=Status.SENDING, attempts=3, not_before=T0)
    clock.shift(timedelta(seconds=89))  # the lease: 3 x NOTIFY_TIMEOUT + 60 s
    assert delivery.due_ids() == []
    clock.shift(timedelta(seconds=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_notifications() == 1
    lost.refresh_from_db()
    out_of_tries.refresh_from_db()
    assert lost.status == Status.RETRY and "the worker stopped while sending" in lost.last_error
    assert out_of_tries.status == Status.FAILED
    assert enqueued.ids == [lost.pk]
    assert [n.pk for n in finished] == [out_of_tries.pk]


# --- Contacts and tests ---------------------------------------------------------------------------


def test_it_mails_and_texts_a_contact(
    receiver: Receiver, smtp_server: SmtpServer, make_notification: MakeNotification
) -> None:
    alice = Contact.objects.create(name="Alice", email="alice@example.com", phone="+14155550123")
    mail = make_notification(contact=alice, transport="email", address=alice.email)
    sms = make_notification(contact=alice, transport="twilio", address=alice.phone)
    assert delivery.deliver(mail.pk) == "sent"
    assert delivery.deliver(sms.pk) == "sent"
    assert smtp_server.wait_for(1)[0].recipients == ["alice@example.com"]
    [text] = receiver.to("/twilio/")
    assert text.form["To"] == "+14155550123" and text.form["Body"].endswith(ACK_URL)


def test_it_sends_a_test_to_each_method_of_a_contact(
    receiver: Receiver, smtp_server: SmtpServer
) -> None:
    alice = Contact.objects.create(name="Alice", email="alice@example.com", phone="+14155550123")
    rows = delivery.send_test(contact=alice)
    assert [(r.transport, r.address, r.status) for r in rows] == [
        ("email", "alice@example.com", Status.SENT),
        ("twilio", "+14155550123", Status.SENT),
    ]
    assert (
        smtp_server.wait_for(1)[0].message["Subject"] == "Test notification from Watchpost to Alice"
    )
    assert "Test notification from Watchpost to Alice" in receiver.to("/twilio/")[0].form["Body"]
    assert len({row.key for row in rows}) == 2


def test_it_sends_a_test_to_a_channel(receiver: Receiver, make_channel: MakeChannel) -> None:
    channel = make_channel("slack", {"url": receiver.url("/slack/T/B/x")}, name="ops room")
    [row] = delivery.send_test(channel=channel)
    assert (row.event, row.status) == (Notification.Event.TEST, Status.SENT)
    assert "Test notification from Watchpost to ops room" in receiver.wait_for(1)[0].json["text"]
    assert DeliveryAttempt.objects.filter(notification=row, ok=True).count() == 1
