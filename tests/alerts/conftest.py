"""Fixtures of the alerts tests: a page to send, rows to deliver, and the task queue seen."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from alerts.models import Channel, Notification
from alerts.transports.base import Incident, Message

ACK_URL = "http://127.0.0.1:8000/incidents/ack/42/signed-token/"
RUNBOOK_URL = "https://runbooks.example.com/api-down"
INCIDENT_URL = "http://127.0.0.1:8000/admin/incidents/incident/42/change/"
PAGERDUTY_KEY = "R0123456789ABCDEF0123456789ABCDE"
TELEGRAM_TOKEN = "123456789:AAH-secret-telegram-token-abcdefgh"

_keys = itertools.count()


def incident(**fields: Any) -> Incident:
    values = {
        "id": 42,
        "title": "api down",
        "monitor": "api",
        "reason": 'HTTP 503 "Service Unavailable"',
        "severity": "critical",
        "status": "triggered",
        "opened_at": "2026-03-02T09:30:00+00:00",
        "runbook_url": RUNBOOK_URL,
        "url": INCIDENT_URL,
        "ack_url": ACK_URL,
    }
    return Incident(**(values | fields))


@pytest.fixture
def page() -> Message:
    """A page for one critical incident, as incidents.messages builds it."""
    return Message(
        event="trigger",
        summary='[CRITICAL] api down: HTTP 503 "Service Unavailable"',
        incidents=(incident(),),
        dedup_key="watchpost-incident-42",
        site_url="http://127.0.0.1:8000",
    )


@pytest.fixture
def make_channel() -> Callable[..., Channel]:
    def make(kind: str, config: dict[str, Any], name: str = "", **fields: Any) -> Channel:
        return Channel.objects.create(
            name=name or f"{kind}-{next(_keys)}", kind=kind, config=config, **fields
        )

    return make


@pytest.fixture
def make_notification(page: Message) -> Callable[..., Notification]:
    """A pending notification row for a channel (or a contact, with transport and address)."""

    def make(
        channel: Channel | None = None, message: Message | None = None, **fields: Any
    ) -> Notification:
        values = {
            "key": f"test-row-{next(_keys)}",
            "event": (message or page).event,
            "channel": channel,
            "transport": channel.kind if channel else fields.get("transport", ""),
            "message": (message or page).to_dict(),
        }
        return Notification.objects.create(**(values | fields))

    return make


@dataclass
class Enqueued:
    """What was handed to the broker: (notification id, countdown) per task."""

    calls: list[tuple[int, float]]

    @property
    def ids(self) -> list[int]:
        return [pk for pk, _ in self.calls]


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> Enqueued:
    """Records deliver_notification tasks instead of sending them to a broker other runs share."""
    from alerts.tasks import deliver_notification

    seen = Enqueued([])

    def apply_async(args: list[int], countdown: float = 0, **_: Any) -> None:
        seen.calls.append((args[0], countdown))

    monkeypatch.setattr(deliver_notification, "apply_async", apply_async)
    return seen
