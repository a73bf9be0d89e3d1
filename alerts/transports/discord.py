"""Discord webhooks: the summary as `content`, one embed per incident."""

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

# Discord allows 10 embeds a message (base.LISTED_INCIDENTS), and caps each part of one.
COLORS = {"critical": 0xC62828, "high": 0xEF6C00, "medium": 0xF2A900, "low": 0x1565C0}
RESOLVED_COLOR = 0x2E7D32


def embed(message: Message, incident: Incident) -> dict[str, Any]:
    color = RESOLVED_COLOR if message.event == "resolved" else COLORS.get(incident.severity, 0)
    item: dict[str, Any] = {
        "title": shorten(incident.title, 256),
        "color": color,
        "fields": [
            {"name": label, "value": shorten(value, 1024), "inline": label != "Reason"}
            for label, value in details(incident)
        ][:25],
    }
    if incident.url:
        item["url"] = incident.url
    if incident.opened_at:
        item["timestamp"] = incident.opened_at
    link_line = " · ".join(f"[{text}]({url})" for text, url in links(message, incident))
    if link_line:
        item["description"] = shorten(link_line, 4096)
    return item


def payload(message: Message) -> dict[str, Any]:
    lines = [f"**{message.summary}**"]
    if actor := actor_line(message):
        lines.append(actor)
    shown, more = listed(message)
    if more:
        lines.append(f"…and {more} more incidents")
    if message.event == "test":
        lines.append(TEST_NOTE)
    return {
        "content": shorten("\n".join(lines), 2000),
        "embeds": [embed(message, incident) for incident in shown],
        # Text from monitors must never ping @everyone or a role.
        "allowed_mentions": {"parse": []},
    }


class DiscordTransport(JsonWebhookTransport):
    kind = "discord"
    service = "Discord"
    config_keys = (
        ConfigKey("url", "the webhook URL, https://discord.com/api/webhooks/<id>/<token>"),
    )
    example = {"url": "https://discord.com/api/webhooks/123456789/XXXXXXXX"}

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(message)
