"""Signed, expiring acknowledge links carried by every page.

The token names the incident and, when the page went to a person, that
contact, so the timeline says who acknowledged from their phone.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "watchpost.incidents.acknowledge"


@dataclass(frozen=True)
class AckToken:
    incident_id: int
    contact_id: int | None


class ExpiredLink(Exception):
    """The signature is good but the link is older than ACK_LINK_MAX_AGE."""

    def __init__(self, token: AckToken) -> None:
        super().__init__("acknowledge link expired")
        self.token = token


def ack_token(incident_id: int, contact_id: int | None = None) -> str:
    payload: dict[str, int] = {"i": incident_id}
    if contact_id is not None:
        payload["c"] = contact_id
    return signing.dumps(payload, salt=SALT, compress=True)


def ack_url(incident_id: int, contact_id: int | None = None) -> str:
    path = reverse("incident-ack", args=[ack_token(incident_id, contact_id)])
    return f"{settings.SITE_URL}{path}"


def read_ack_token(token: str) -> AckToken:
    """The token's contents; BadSignature when tampered, ExpiredLink when too old."""
    try:
        payload = signing.loads(token, salt=SALT, max_age=settings.ACK_LINK_MAX_AGE)
    except signing.SignatureExpired:
        # The signature is valid (loads checks it before the age), so the
        # payload can be trusted enough to point at the incident.
        payload = signing.loads(token, salt=SALT)
        raise ExpiredLink(_parse(payload)) from None
    return _parse(payload)


def _parse(payload: object) -> AckToken:
    if not isinstance(payload, dict) or not isinstance(payload.get("i"), int):
        raise signing.BadSignature("malformed acknowledge token")
    contact = payload.get("c")
    return AckToken(payload["i"], contact if isinstance(contact, int) else None)
