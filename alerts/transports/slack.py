"""Slack incoming webhooks: a mrkdwn `text` (notifications, fallback) and Block Kit blocks."""

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
    shorten,
)
from alerts.transports.http import JsonWebhookTransport

# Block Kit limits: a section's text, a field, a button's label.
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, text: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{escape(text)}>"


def incident_text(message: Message, incident: Incident) -> str:
    lines = [f"*{escape(label)}:* {escape(value)}" for label, value in details(incident)]
    lines.append("  ".join(link(url, text) for text, url in links(message, incident)))
    return "\n".join(line for line in lines if line)


def text(message: Message) -> str:
    """The whole message in mrkdwn: what notifications and old clients show."""
    parts = [f"*{escape(message.summary)}*"]
    if actor := actor_line(message):
        parts.append(escape(actor))
    shown, more = listed(message)
    for incident in shown:
        title = f"*{escape(incident.title)}*\n" if len(message.incidents) > 1 else ""
        parts.append(title + incident_text(message, incident))
    if more:
        parts.append(f"…and {more} more incidents")
    if message.event == "test":
        parts.append(escape(TEST_NOTE))
    return "\n\n".join(parts)


def incident_blocks(message: Message, incident: Incident, grouped: bool) -> list[dict[str, Any]]:
    fields = [
        {"type": "mrkdwn", "text": shorten(f"*{escape(label)}*\n{escape(value)}", FIELD_LIMIT)}
        for label, value in details(incident)
    ]
    section: dict[str, Any] = {"type": "section"}
    if grouped:
        section["text"] = {"type": "mrkdwn", "text": f"*{escape(incident.title)}*"}
    if fields:
        section["fields"] = fields[:10]
    blocks = [section] if len(section) > 1 else []
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}
        | ({"style": "primary"} if label == "Acknowledge" else {})
        for label, url in links(message, incident)
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks


def payload(message: Message) -> dict[str, Any]:
    headline = f"*{escape(message.summary)}*"
    if actor := actor_line(message):
        headline += f"\n{escape(actor)}"
    if message.event == "test":
        headline += f"\n{escape(TEST_NOTE)}"
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": shorten(headline, SECTION_LIMIT)}}
    ]
    shown, more = listed(message)
    for incident in shown:
        blocks += incident_blocks(message, incident, len(message.incidents) > 1)
    if more:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"…and {more} more incidents"}
        ]})  # fmt: skip
    return {"text": text(message), "blocks": blocks}


class SlackTransport(JsonWebhookTransport):
    kind = "slack"
    service = "Slack"
    config_keys = (
        ConfigKey("url", "the incoming webhook URL, https://hooks.slack.com/services/…"),
    )
    example = {"url": "https://hooks.slack.com/services/T000/B000/XXXXXXXX"}

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(message)
