"""What every transport is handed and what it raises.

A transport sends one ready `Message` to one destination and either returns or
raises `TransportError`. Deciding who is paged, when, and how often is not its
job (incidents.escalation decides; alerts.delivery retries and logs).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError


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


@dataclass(frozen=True)
class ConfigKey:
    """One key of a channel's config, as the admin's help table shows it."""

    name: str
    help: str
    required: bool = True


class Transport:
    kind: ClassVar[str]
    # The channel config's keys (what clean_config accepts) and an example config.
    config_keys: ClassVar[tuple[ConfigKey, ...]] = ()
    example: ClassVar[dict[str, Any]] = {}

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Validate a channel's config; raise django ValidationError naming the key."""
        return config

    def send(self, destination: Destination, message: Message) -> None:
        raise NotImplementedError


# --- What every message says, whatever its format ------------------------------------------

# Events that page someone: their messages offer the acknowledge link. An
# acknowledged or resolved announcement does not (there is nothing left to ack).
PAGING_EVENTS = frozenset({"trigger", "reminder", "grouped"})
# A grouped storm message lists this many incidents; the rest are counted.
LISTED_INCIDENTS = 10
TEST_NOTE = (
    "This is a test notification from Watchpost: if you can read it, this destination works."
)


def shorten(text: str, limit: int) -> str:
    """The text cut to at most `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else f"{text[: max(limit - 1, 0)]}…"


def one_line(text: str) -> str:
    return " ".join(text.split())


def actor_line(message: Message) -> str:
    """Who acknowledged or resolved ('' when not told, or when the summary says it already)."""
    if not message.actor or message.event not in ("acknowledged", "resolved"):
        return ""
    line = f"{message.event.capitalize()} by {message.actor}"
    return "" if line in message.summary else line


def details(incident: Incident) -> list[tuple[str, str]]:
    """The labelled facts of an incident that every format shows."""
    rows = [
        ("Monitor", incident.monitor),
        ("Reason", incident.reason),
        ("Severity", incident.severity),
        ("Status", incident.status),
    ]
    return [(label, value) for label, value in rows if value]


def links(message: Message, incident: Incident) -> list[tuple[str, str]]:
    """(text, url) of an incident's links: acknowledge (when paging), runbook, incident page."""
    rows = [
        ("Acknowledge", incident.ack_url if message.event in PAGING_EVENTS else ""),
        ("Runbook", incident.runbook_url),
        ("Incident", incident.url),
    ]
    return [(text, url) for text, url in rows if url]


def listed(message: Message) -> tuple[tuple[Incident, ...], int]:
    """The incidents a message lists in full, and how many more it only counts."""
    shown = message.incidents[:LISTED_INCIDENTS]
    return shown, len(message.incidents) - len(shown)


def plain_text(message: Message) -> str:
    """The message as plain text: summary, who, then each incident's facts and links."""
    lines = [message.summary]
    if actor := actor_line(message):
        lines.append(actor)
    shown, more = listed(message)
    for incident in shown:
        lines.append("")
        if len(message.incidents) > 1:
            lines.append(incident.title)
        lines += [f"{label}: {value}" for label, value in details(incident)]
        lines += [f"{text}: {url}" for text, url in links(message, incident)]
    if more:
        lines += ["", f"…and {more} more incidents"]
    if message.event == "test":
        lines += ["", TEST_NOTE]
    return "\n".join(lines)


# --- Checking a channel's config -------------------------------------------------------------


class ConfigCheck:
    """Collects every problem of a config, each naming its key, and raises them together."""

    def __init__(self, config: Any, transport: type[Transport]) -> None:
        self.problems: list[str] = []
        self.config: dict[str, Any] = config if isinstance(config, dict) else {}
        if not isinstance(config, dict):
            self.problems.append('must be a JSON object, e.g. {"url": "https://…"}')
            return
        known = [key.name for key in transport.config_keys]
        for key in config:
            if key not in known:
                self.problem(key, f"is not a setting of this kind (known: {', '.join(known)})")
        for key in transport.config_keys:
            if key.required and config.get(key.name) in (None, "", [], {}):
                self.problem(key.name, f"is required: {key.help}")

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{key}: {text}")

    def present(self, key: str) -> bool:
        return self.config.get(key) not in (None, "", [], {})

    def text(self, key: str) -> str:
        value = self.config.get(key)
        if value is not None and not isinstance(value, str):
            self.problem(key, f"must be text, got {type(value).__name__}")
            return ""
        return value or ""

    def url(self, key: str) -> str:
        value = self.text(key)
        if value and (problem := url_problem(value)):
            self.problem(key, problem)
        return value

    def text_list(self, key: str) -> list[str]:
        value = self.config.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(key, 'must be a list of text, e.g. ["…", "…"]')
            return []
        return value

    def done(self) -> dict[str, Any]:
        if self.problems:
            raise ValidationError({"config": self.problems})
        return self.config


def url_problem(value: str) -> str:
    """What is wrong with a destination URL as typed ('' if nothing can be seen yet).

    Where its host resolves to is checked when sending (the answer may change).
    """
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return f"{value!r} is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http:// or https:// URL with a host, got {shorten(value, 60)!r}"
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return ""
    from alerts.transports.http import refusal

    why = refusal(address)
    return f"{address} is {why}" if why else ""
