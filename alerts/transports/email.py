"""Email through Django's mail backend: an HTML and a plain-text body from templates."""

from __future__ import annotations

import smtplib
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.template.loader import render_to_string

from alerts.transports.base import (
    TEST_NOTE,
    ConfigCheck,
    ConfigKey,
    Destination,
    Message,
    Transport,
    TransportError,
    actor_line,
    details,
    links,
    listed,
    one_line,
    shorten,
)

MAX_RECIPIENTS = 50


def context(message: Message) -> dict[str, Any]:
    shown, more = listed(message)
    return {
        "message": message,
        "actor": actor_line(message),
        "grouped": len(message.incidents) > 1,
        "incidents": [
            {"incident": item, "details": details(item), "links": links(message, item)}
            for item in shown
        ],
        "more": more,
        "test_note": TEST_NOTE if message.event == "test" else "",
    }


def build(message: Message, recipients: list[str]) -> EmailMultiAlternatives:
    data = context(message)
    email = EmailMultiAlternatives(
        subject=shorten(one_line(message.summary), 200),
        body=render_to_string("alerts/email/message.txt", data),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"X-Watchpost-Event": message.event, "Auto-Submitted": "auto-generated"},
    )
    email.attach_alternative(render_to_string("alerts/email/message.html", data), "text/html")
    return email


def failure(exc: Exception) -> TransportError:
    """A refused recipient is for good; everything else (server down, busy, 4xx) may pass."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        permanent = all(500 <= code < 600 for code in codes)
        return TransportError(f"email: the server refused {', '.join(exc.recipients)}", permanent)
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return TransportError(
            f"email: the server answered {exc.smtp_code} {shorten(one_line(detail), 160)}"
        )
    return TransportError(f"email: could not send ({type(exc).__name__}: {shorten(str(exc), 160)})")


class EmailTransport(Transport):
    kind = "email"
    config_keys = (ConfigKey("to", f"the addresses to mail, a list of at most {MAX_RECIPIENTS}"),)
    example = {"to": ["oncall@example.com", "sre-team@example.com"]}

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        check = ConfigCheck(config, cls)
        addresses = check.text_list("to")
        if len(addresses) > MAX_RECIPIENTS:
            check.problem("to", f"at most {MAX_RECIPIENTS} addresses, got {len(addresses)}")
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                check.problem("to", f"{address!r} is not an email address")
        return check.done()

    def send(self, destination: Destination, message: Message) -> None:
        recipients = [destination.address] if destination.address else destination.config["to"]
        try:
            build(message, recipients).send()
        except (smtplib.SMTPException, OSError) as exc:
            raise failure(exc) from exc
