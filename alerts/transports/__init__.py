"""Notification transports, one module per kind, and the registry that finds them."""

from __future__ import annotations

from alerts.transports.base import Transport
from alerts.transports.discord import DiscordTransport
from alerts.transports.email import EmailTransport
from alerts.transports.pagerduty import PagerDutyTransport
from alerts.transports.slack import SlackTransport
from alerts.transports.teams import TeamsTransport
from alerts.transports.telegram import TelegramTransport
from alerts.transports.twilio import TwilioTransport
from alerts.transports.webhook import WebhookTransport

# Keyed by Channel.Kind values; a contact's email is "email", its SMS "twilio".
TRANSPORTS: dict[str, type[Transport]] = {
    transport.kind: transport
    for transport in (
        EmailTransport, SlackTransport, DiscordTransport, TeamsTransport, WebhookTransport,
        PagerDutyTransport, TelegramTransport, TwilioTransport,
    )
}  # fmt: skip


def get_transport(kind: str) -> Transport:
    """A transport of this kind, ready to send; LookupError for a kind nobody wrote."""
    try:
        return TRANSPORTS[kind]()
    except KeyError:
        raise LookupError(f"no transport for kind {kind!r}") from None
