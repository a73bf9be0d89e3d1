"""What every transport is handed and what it raises.

A transport sends one ready `Message` to one destination and either returns or
raises `TransportError`. Deciding who is paged, when, and how often is not its
job (incidents.escalation decides; alerts.delivery retries and logs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


class TransportError(Exception):
    """A delivery failed.

    `permanent` means retrying cannot help (401/403/404/410, an unknown chat,
    a refused address): the notification fails at once and the channel is
    flagged for an admin to fix.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class Incident:
    """One incident as a message shows it (a grouped message carries several)."""

    id: int | None
    title: str
    monitor: str
    reason: str
    severity: str
    status: str  # triggered / acknowledged / resolved
    opened_at: str  # ISO 8601
    runbook_url: str = ""
    url: str = ""  # the incident in the admin
    ack_url: str = ""  # signed acknowledge link (GET shows, POST acknowledges)


@dataclass(frozen=True)
class Message:
    """A page, a reminder, an announcement, a grouped storm message or a test.

    `event` is one of alerts.models.Notification.Event. `summary` is one
    plain-text line fit for an SMS or a chat headline; `incidents` holds one
    incident, or several for a grouped message (and none for a test).
    `actor` names who acknowledged or resolved, for those events.
    `dedup_key` is stable per incident (PagerDuty's dedup_key).
    """

    event: str
    summary: str
    incidents: tuple[Incident, ...] = ()
    actor: str = ""
    dedup_key: str = ""
    site_url: str = ""

    @property
    def incident(self) -> Incident | None:
        return self.incidents[0] if len(self.incidents) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        data = dict(data)
        data["incidents"] = tuple(Incident(**item) for item in data.get("incidents", ()))
        return cls(**data)


@dataclass
class Destination:
    """Where one notification goes: a channel's config, or a contact's address."""

    kind: str  # the transport kind
    config: dict[str, Any] = field(default_factory=dict)  # a channel's config
    address: str = ""  # a contact's email address or phone number
    name: str = ""  # the channel or contact name, for logs and errors


class Transport:
    kind: ClassVar[str]

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Validate a channel's config; raise django ValidationError naming the key."""
        return config

    def send(self, destination: Destination, message: Message) -> None:
        raise NotImplementedError
