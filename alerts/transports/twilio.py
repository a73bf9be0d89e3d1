"""SMS through Twilio's Messages API: one short text per number, with the acknowledge link."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError

from alerts.transports.base import (
    PAGING_EVENTS,
    ConfigCheck,
    ConfigKey,
    Destination,
    Message,
    Transport,
    TransportError,
    actor_line,
    one_line,
    shorten,
)
from alerts.transports.http import post
from alerts.validators import validate_e164

SMS_LIMIT = 320  # two concatenated SMS segments
MAX_NUMBERS = 10
# Twilio answers 400 to a number it will never text (invalid, not mobile,
# unsubscribed with STOP): retrying cannot help.
PERMANENT = frozenset({400, 401, 403, 404, 410})


def extras(message: Message) -> list[str]:
    """What the SMS adds after the summary while there is room."""
    one = message.incident
    if one is None:
        return [message.site_url] if message.incidents and message.site_url else []
    found = []
    if one.monitor and one.monitor not in message.summary:
        found.append(f"Monitor: {one.monitor}.")
    if one.reason and one.reason not in message.summary:
        found.append(f"Reason: {one.reason}.")
    if one.runbook_url:
        found.append(f"Runbook: {one.runbook_url}")
    return found


def sms_text(message: Message) -> str:
    """At most SMS_LIMIT characters: summary and who, the ack link whole, then what fits."""
    one = message.incident
    ack = one.ack_url if one and message.event in PAGING_EVENTS else ""
    tail = f" Ack: {ack}" if ack else ""
    head = " ".join(part for part in (message.summary, actor_line(message)) if part)
    if message.event == "test":
        head = f"{head} (Watchpost test: this number receives pages.)"
    text = shorten(one_line(head), max(SMS_LIMIT - len(tail), 40))
    for extra in extras(message):
        extra = one_line(extra)
        if len(text) + 1 + len(extra) + len(tail) <= SMS_LIMIT:
            text = f"{text} {extra}"
    return shorten(text + tail, SMS_LIMIT)


def account(config: dict[str, Any]) -> tuple[str, str, str]:
    sid = config.get("account_sid") or settings.TWILIO_ACCOUNT_SID
    token = config.get("auth_token") or settings.TWILIO_AUTH_TOKEN
    sender = config.get("from") or settings.TWILIO_FROM_NUMBER
    if not (sid and token and sender):
        raise TransportError(
            "SMS: no Twilio account; set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
            "TWILIO_FROM_NUMBER (or the channel's account_sid, auth_token and from)",
            permanent=True,
        )
    return sid, token, sender


def text_one(url: str, auth: tuple[str, str], sender: str, number: str, body: str) -> None:
    form = urlencode({"To": number, "From": sender, "Body": body}).encode()
    response = post(
        url, form, service="Twilio", content_type="application/x-www-form-urlencoded",
        auth=auth, secrets=(auth[1],),
    )  # fmt: skip
    response.raise_for_status(PERMANENT)


class TwilioTransport(Transport):
    kind = "twilio"
    config_keys = (
        ConfigKey("to", f"the phone numbers to text, E.164, at most {MAX_NUMBERS}"),
        ConfigKey("account_sid", "the Twilio account (default: TWILIO_ACCOUNT_SID)", False),
        ConfigKey("auth_token", "its auth token (default: TWILIO_AUTH_TOKEN)", False),
        ConfigKey("from", "the sending number, E.164 (default: TWILIO_FROM_NUMBER)", False),
    )
    example = {"to": ["+14155550123", "+442071838750"]}

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        check = ConfigCheck(config, cls)
        numbers = check.text_list("to")
        if len(numbers) > MAX_NUMBERS:
            check.problem("to", f"at most {MAX_NUMBERS} numbers, got {len(numbers)}")
        for key, values in (("to", numbers), ("from", [check.text("from")])):
            for number in filter(None, values):
                try:
                    validate_e164(number)
                except ValidationError as exc:
                    check.problem(key, " ".join(exc.messages))
        sid = check.text("account_sid")
        if sid and (not sid.startswith("AC") or len(sid) != 34):
            check.problem("account_sid", "must be AC followed by 32 characters")
        check.text("auth_token")
        return check.done()

    def send(self, destination: Destination, message: Message) -> None:
        numbers = [destination.address] if destination.address else destination.config["to"]
        sid, token, sender = account(destination.config)
        url = f"{settings.TWILIO_API_URL.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        body = sms_text(message)
        errors = []
        # Every number is tried even when one fails. A retry texts them all
        # again: a second SMS beats a page lost for the others.
        for number in numbers:
            try:
                text_one(url, (sid, token), sender, number, body)
            except TransportError as exc:
                errors.append((number, exc))
        if errors:
            text = "; ".join(f"{number}: {error.message}" for number, error in errors)
            permanent = all(error.permanent for _, error in errors)
            raise TransportError(text, permanent=permanent)
