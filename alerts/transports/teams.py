"""Microsoft Teams: an Adaptive Card posted to a Workflows (or connector) incoming webhook."""

from __future__ import annotations

from typing import Any

from alerts.transports.base import (
    TEST_NOTE,
    ConfigKey,
    Incident,
    Message,
    actor_line,
    details,
    links,
    listed,
)
from alerts.transports.http import JsonWebhookTransport

CARD_TYPE = "application/vnd.microsoft.card.adaptive"


def text_block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def incident_elements(message: Message, incident: Incident, grouped: bool) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = []
    if grouped:
        elements.append(text_block(incident.title, weight="Bolder", separator=True))
    facts = [{"title": label, "value": value} for label, value in details(incident)]
    if facts:
        elements.append({"type": "FactSet", "facts": facts})
    actions = [
        {"type": "Action.OpenUrl", "title": text, "url": url}
        for text, url in links(message, incident)
    ]
    if actions:
        elements.append({"type": "ActionSet", "actions": actions})
    return elements


def card(message: Message) -> dict[str, Any]:
    body = [text_block(message.summary, weight="Bolder", size="Medium")]
    if actor := actor_line(message):
        body.append(text_block(actor))
    shown, more = listed(message)
    for incident in shown:
        body += incident_elements(message, incident, len(message.incidents) > 1)
    if more:
        body.append(text_block(f"…and {more} more incidents", isSubtle=True))
    if message.event == "test":
        body.append(text_block(TEST_NOTE))
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    }


def payload(message: Message) -> dict[str, Any]:
    return {
        "type": "message",
        "summary": message.summary,
        "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": card(message)}],
    }


class TeamsTransport(JsonWebhookTransport):
    kind = "teams"
    service = "Teams"
    config_keys = (
        ConfigKey(
            "url",
            'the incoming webhook URL of a Teams Workflow ("Post to a channel when a webhook '
            'request is received") or of a connector',
        ),
    )
    example = {"url": "https://prod-00.westus.logic.azure.com/workflows/…/triggers/manual/run?…"}

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(message)
