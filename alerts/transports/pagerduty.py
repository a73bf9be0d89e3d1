"""PagerDuty Events API v2: trigger, acknowledge and resolve by the incident's dedup key."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from alerts.transports.base import (
    ConfigCheck,
    ConfigKey,
    Destination,
    Message,
    Transport,
    TransportError,
    details,
    links,
    shorten,
)
from alerts.transports.http import PERMANENT_STATUSES, post_json

ACTIONS = {"acknowledged": "acknowledge", "resolved": "resolve"}  # every other event triggers
SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
RANK = ["info", "warning", "error", "critical"]
# PagerDuty answers 400 to an event it will never accept (a routing key that is
# not an integration's, a malformed event): retrying cannot help.
PERMANENT = PERMANENT_STATUSES | {400}


def severity(message: Message) -> str:
    """PagerDuty's severity; a grouped message takes its worst incident's."""
    found = [SEVERITY.get(incident.severity, "error") for incident in message.incidents]
    return max(found, key=RANK.index) if found else "info"


def source(message: Message) -> str:
    one = message.incident
    if one and one.monitor:
        return one.monitor
    return urlsplit(message.site_url).hostname or "watchpost"


def custom_details(message: Message) -> dict[str, Any]:
    if message.incident:
        return {label.lower(): value for label, value in details(message.incident)}
    return {
        "incidents": [
            {"title": incident.title, **{k.lower(): v for k, v in details(incident)}}
            for incident in message.incidents
        ]
    }


def trigger(message: Message) -> dict[str, Any]:
    one = message.incident
    payload: dict[str, Any] = {
        "summary": shorten(message.summary, 1024),
        "source": shorten(source(message), 255),
        "severity": severity(message),
        "custom_details": custom_details(message),
    }
    if one and one.opened_at:
        payload["timestamp"] = one.opened_at
    if one and one.monitor:
        payload["component"] = one.monitor
    event_links = [
        {"href": url, "text": f"{text}: {incident.title}" if not one else text}
        for incident in message.incidents
        for text, url in links(message, incident)
    ]
    return {"payload": payload, "links": event_links[:20]}


def event(routing_key: str, message: Message) -> dict[str, Any]:
    action = ACTIONS.get(message.event, "trigger")
    dedup_key = message.dedup_key
    if not dedup_key and message.event == "test":
        dedup_key = f"watchpost-test-{uuid.uuid4()}"
    if not dedup_key:
        raise TransportError(
            f"PagerDuty: a {message.event} event needs a dedup key", permanent=True
        )
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": shorten(dedup_key, 255),
    }
    if action == "trigger":
        body |= trigger(message)
        body |= {"client": "Watchpost", "client_url": message.site_url or settings.SITE_URL}
    return body


class PagerDutyTransport(Transport):
    kind = "pagerduty"
    config_keys = (
        ConfigKey(
            "routing_key",
            "the 32-character integration key of an Events API v2 integration of the service",
        ),
    )
    example = {"routing_key": "R0123456789ABCDEF0123456789ABCDE"}

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        check = ConfigCheck(config, cls)
        key = check.text("routing_key")
        if key and (len(key) != 32 or not key.isalnum()):
            check.problem(
                "routing_key", f"must be 32 letters and digits, got {len(key)} characters"
            )
        return check.done()

    def send(self, destination: Destination, message: Message) -> None:
        routing_key = destination.config["routing_key"]
        post_json(
            settings.PAGERDUTY_EVENTS_URL, event(routing_key, message), service="PagerDuty",
            secrets=(routing_key,), permanent=PERMANENT,
        )  # fmt: skip
