"""Generic webhooks: the message as JSON, or a JSON body template with $placeholders.

With a `secret`, the receiver can prove the request is ours:
X-Watchpost-Signature is `sha256=` and the hex HMAC-SHA256 of the exact body bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from string import Template
from typing import Any

from alerts.transports.base import (
    PAGING_EVENTS,
    ConfigCheck,
    ConfigKey,
    Destination,
    Message,
    Transport,
    TransportError,
)
from alerts.transports.http import post

SIGNATURE_HEADER = "X-Watchpost-Signature"
PLACEHOLDERS = (
    "event", "summary", "actor", "title", "monitor", "reason", "severity", "status",
    "opened_at", "ack_url", "runbook_url", "url", "incident_id", "incident_count",
    "dedup_key", "site_url",
)  # fmt: skip
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the HTTP layer or the signature own.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", SIGNATURE_HEADER.lower()}
)
SAMPLE = Message(event="trigger", summary='Sample "summary"\nwith a line break')


def values(message: Message) -> dict[str, str]:
    """Every placeholder's value as text; a grouped message names all its monitors."""
    one = message.incident
    monitors = dict.fromkeys(item.monitor for item in message.incidents if item.monitor)
    ack_url = one.ack_url if one and message.event in PAGING_EVENTS else ""
    return {
        "event": message.event,
        "summary": message.summary,
        "actor": message.actor,
        "title": one.title if one else "",
        "monitor": ", ".join(monitors),
        "reason": one.reason if one else "",
        "severity": one.severity if one else "",
        "status": one.status if one else "",
        "opened_at": one.opened_at if one else "",
        "ack_url": ack_url,
        "runbook_url": one.runbook_url if one else "",
        "url": one.url if one else "",
        "incident_id": str(one.id) if one and one.id is not None else "",
        "incident_count": str(len(message.incidents)),
        "dedup_key": message.dedup_key,
        "site_url": message.site_url,
    }


def template_text(template: Any) -> str:
    """A template given as a JSON object in the config is its JSON text."""
    return template if isinstance(template, str) else json.dumps(template, ensure_ascii=False)


def render(template: str, fields: dict[str, str]) -> bytes:
    """Fill the template, each value JSON-escaped so it cannot break out of its string."""
    escaped = {name: json.dumps(value, ensure_ascii=False)[1:-1] for name, value in fields.items()}
    body = Template(template).substitute(escaped)
    json.loads(body)
    return body.encode()


def body_of(config: dict[str, Any], message: Message) -> bytes:
    template = config.get("body_template")
    if not template:
        return json.dumps(message.to_dict(), ensure_ascii=False).encode()
    try:
        return render(template_text(template), values(message))
    except (KeyError, ValueError) as exc:
        raise TransportError(
            f"webhook: body_template does not fill in to JSON ({type(exc).__name__}: {exc})",
            permanent=True,
        ) from exc


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_template(check: ConfigCheck) -> None:
    raw = check.config.get("body_template")
    if raw in (None, ""):
        return
    if not isinstance(raw, str | dict | list):
        check.problem("body_template", "must be JSON text or a JSON object")
        return
    template = Template(template_text(raw))
    unknown = sorted(set(template.get_identifiers()) - set(PLACEHOLDERS))
    if unknown or not template.is_valid():
        shown = ", ".join(f"${name}" for name in unknown) or "a lone $ (write $$ for a dollar)"
        known = ", ".join(f"${name}" for name in PLACEHOLDERS)
        check.problem("body_template", f"unknown placeholder {shown}; known: {known}")
        return
    # Filled with sample text, and with every value empty (a test message has no incident).
    for fields in (
        values(SAMPLE) | {"incident_id": "42"},
        dict.fromkeys(PLACEHOLDERS, "") | {"incident_count": "0"},
    ):
        try:
            render(template.template, fields)
        except ValueError as exc:
            check.problem(
                "body_template",
                f"is not valid JSON once filled in ({exc}); put every placeholder inside "
                'quotes, e.g. {"id": "$incident_id"}',
            )
            return


def check_headers(check: ConfigCheck) -> None:
    headers = check.config.get("headers")
    if headers in (None, {}):
        return
    if not isinstance(headers, dict):
        check.problem(
            "headers", 'must be an object of header names and values, e.g. {"X-Team": "sre"}'
        )
        return
    for name, value in headers.items():
        if not TOKEN.match(name):
            check.problem("headers", f"{name!r} is not a valid header name")
        elif name.lower() in RESERVED_HEADERS:
            check.problem("headers", f"{name} is set by Watchpost and cannot be overridden")
        elif not isinstance(value, str) or not value.isascii() or any(c in value for c in "\r\n\0"):
            check.problem("headers", f"the value of {name} must be one line of ASCII text")


class WebhookTransport(Transport):
    kind = "webhook"
    config_keys = (
        ConfigKey("url", "where to POST, an http:// or https:// URL"),
        ConfigKey(
            "body_template",
            "JSON to send instead of the whole message, with placeholders "
            + ", ".join(f"${name}" for name in PLACEHOLDERS)
            + ' inside strings, e.g. {"text": "$summary", "id": "$incident_id"}',
            required=False,
        ),
        ConfigKey(
            "secret",
            f"signs each request: {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of the body>",
            required=False,
        ),
        ConfigKey("headers", 'extra request headers, e.g. {"Authorization": "Bearer …"}', False),
    )
    example = {
        "url": "https://hooks.example.com/watchpost",
        "secret": "a-long-random-string",
        "body_template": {"text": "$summary", "monitor": "$monitor", "ack": "$ack_url"},
    }

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        check = ConfigCheck(config, cls)
        check.url("url")
        check.text("secret")
        check_template(check)
        check_headers(check)
        return check.done()

    def send(self, destination: Destination, message: Message) -> None:
        config = destination.config
        body = body_of(config, message)
        headers = {"X-Watchpost-Event": message.event, **config.get("headers", {})}
        if config.get("secret"):
            headers[SIGNATURE_HEADER] = signature(config["secret"], body)
        secrets = tuple(str(value) for value in config.get("headers", {}).values())
        response = post(
            config["url"], body, service="webhook", content_type="application/json",
            headers=headers, secrets=(*secrets, config.get("secret", "")),
        )  # fmt: skip
        response.raise_for_status()
