"""Telegram bots: sendMessage with HTML formatting to a chat, group or channel."""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

from django.conf import settings

from alerts.transports.base import (
    TEST_NOTE,
    ConfigCheck,
    ConfigKey,
    Destination,
    Incident,
    Message,
    Transport,
    actor_line,
    details,
    links,
    listed,
)
from alerts.transports.http import post

BOT_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")
CHAT_ID = re.compile(r"^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,})$")
# Telegram takes 4096 characters of text; incidents past this budget are only counted.
TEXT_BUDGET = 3800


def incident_html(message: Message, incident: Incident, grouped: bool) -> str:
    lines = [f"<b>{escape(incident.title)}</b>"] if grouped else []
    lines += [f"{escape(label)}: {escape(value)}" for label, value in details(incident)]
    anchors = [
        f'<a href="{escape(url)}">{escape(text)}</a>' for text, url in links(message, incident)
    ]
    if anchors:
        lines.append(" · ".join(anchors))
    return "\n".join(lines)


def text(message: Message) -> str:
    parts = [f"<b>{escape(message.summary)}</b>"]
    if actor := actor_line(message):
        parts.append(escape(actor))
    shown, more = listed(message)
    for number, incident in enumerate(shown):
        block = incident_html(message, incident, len(message.incidents) > 1)
        if sum(map(len, parts)) + len(block) > TEXT_BUDGET:
            more += len(shown) - number
            break
        parts.append(block)
    if more:
        parts.append(f"…and {more} more incidents")
    if message.event == "test":
        parts.append(escape(TEST_NOTE))
    return "\n\n".join(parts)


class TelegramTransport(Transport):
    kind = "telegram"
    config_keys = (
        ConfigKey("bot_token", "the token @BotFather gave the bot, e.g. 123456:ABC-DEF…"),
        ConfigKey(
            "chat_id",
            "the chat's numeric id (groups are negative) or a public channel's @name; "
            "the bot must be a member",
        ),
    )
    example = {
        "bot_token": "123456789:AAH-example-token-from-botfather",
        "chat_id": "-1001234567890",
    }

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        check = ConfigCheck(config, cls)
        token = check.text("bot_token")
        if token and not BOT_TOKEN.match(token):
            check.problem("bot_token", "must look like 123456789:AAH… (the token from @BotFather)")
        chat = config.get("chat_id") if isinstance(config, dict) else None
        if isinstance(chat, int) and not isinstance(chat, bool):
            chat = str(chat)
        if chat and (not isinstance(chat, str) or not CHAT_ID.match(chat)):
            check.problem("chat_id", "must be a number such as -1001234567890, or @channelname")
        return check.done()

    def send(self, destination: Destination, message: Message) -> None:
        token = destination.config["bot_token"]
        url = f"{settings.TELEGRAM_API_URL.rstrip('/')}/bot{token}/sendMessage"
        payload = {
            "chat_id": destination.config["chat_id"],
            "text": text(message),
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        response = post(
            url, body, service="Telegram", content_type="application/json", secrets=(token,)
        )
        answer = response.json()
        if response.ok and isinstance(answer, dict) and answer.get("ok"):
            return
        description = str(answer.get("description", "")) if isinstance(answer, dict) else ""
        if response.status == 400 and "chat not found" in description.lower():
            # The chat is gone or the bot was never added: an admin must fix the config.
            raise response.error(permanent=True)
        raise response.error()
