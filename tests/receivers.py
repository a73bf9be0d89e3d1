"""Servers that stand in for the services notifications go to, on loopback.

`Receiver` is one HTTP server that answers, by path prefix, as each service
does, and refuses what the service would refuse (with the service's own error),
so a test that sees a success knows the payload would be accepted:

    /slack/...                       Slack incoming webhook: 200 "ok"
    /discord/...                     Discord webhook: 204
    /teams/...                       Teams Workflows webhook: 202
    /pagerduty/v2/enqueue            PagerDuty Events API v2: 202 {"status": "success", ...}
    /twilio/2010-04-01/Accounts/<sid>/Messages.json    Twilio: 201 {"sid": "SM...", ...}
    /telegram/bot<token>/sendMessage Telegram Bot API: 200 {"ok": true, ...}
    anything else                    a generic webhook: 200 "ok"

`reply(path, 500, 500)` scripts the next answers of a path; then the service
behaviour resumes. `SmtpServer` is an aiosmtpd server recording parsed emails.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-auth-token-0123456789"
TWILIO_FROM = "+15005550006"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
PAGERDUTY_ACTIONS = {"trigger", "acknowledge", "resolve"}
PAGERDUTY_SEVERITIES = {"critical", "error", "warning", "info"}
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "s", "a", "code", "pre"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Request:
    """One request as the receiver saw it."""

    service: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        value = self.header("Authorization") or ""
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


@dataclass
class Reply:
    status: int
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        return body, headers


# --- What each service accepts --------------------------------------------------------------------


def slack(request: Request, receiver: Receiver) -> Reply:
    payload = request.json
    if not isinstance(payload, dict):
        return Reply(400, "invalid_payload")
    if not payload.get("text") and not payload.get("blocks"):
        return Reply(400, "no_text")
    blocks = payload.get("blocks", [])
    if len(blocks) > 50 or not all(slack_block_ok(block) for block in blocks):
        return Reply(400, "invalid_blocks")
    return Reply(200, "ok")


def slack_block_ok(block: dict[str, Any]) -> bool:
    kind = block.get("type")
    if kind == "section":
        text = (block.get("text") or {}).get("text", "")
        fields = block.get("fields", [])
        return bool(text.strip() or fields) and len(text) <= 3000 and len(fields) <= 10
    if kind == "actions":
        buttons = block.get("elements", [])
        return 0 < len(buttons) <= 25 and all(b.get("url") and b.get("text") for b in buttons)
    return kind in ("context", "divider", "header")


def discord(request: Request, receiver: Receiver) -> Reply:
    payload = request.json
    if not isinstance(payload, dict):
        return Reply(400, {"message": "Cannot send an empty message", "code": 50006})
    embeds = payload.get("embeds") or []
    if not payload.get("content") and not embeds:
        return Reply(400, {"message": "Cannot send an empty message", "code": 50006})
    too_long = len(payload.get("content") or "") > 2000 or len(embeds) > 10
    if too_long or any(len(embed.get("title", "")) > 256 for embed in embeds):
        return Reply(400, {"message": "Invalid Form Body", "code": 50035})
    return Reply(204)


def teams(request: Request, receiver: Receiver) -> Reply:
    payload = request.json
    try:
        attachment = payload["attachments"][0]
        card = attachment["content"]
        good = (
            payload["type"] == "message"
            and attachment["contentType"] == ADAPTIVE_CARD
            and card["type"] == "AdaptiveCard"
            and card["body"]
        )
    except (KeyError, IndexError, TypeError):
        good = False
    if not good:
        return Reply(400, {"error": {"code": "InvalidRequestContent"}})
    return Reply(202)


def pagerduty(request: Request, receiver: Receiver) -> Reply:
    event = request.json if isinstance(request.json, dict) else {}
    errors = []
    if len(str(event.get("routing_key", ""))) != 32:
        errors.append("'routing_key' must be 32 characters")
    action = event.get("event_action")
    if action not in PAGERDUTY_ACTIONS:
        errors.append("'event_action' is invalid")
    if action in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload") or {}
        if not payload.get("summary") or len(payload["summary"]) > 1024:
            errors.append("'payload.summary' is missing or too long")
        if not payload.get("source"):
            errors.append("'payload.source' is missing")
        if payload.get("severity") not in PAGERDUTY_SEVERITIES:
            errors.append("'payload.severity' is invalid")
    if errors:
        return Reply(
            400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        )
    dedup_key = event.get("dedup_key") or uuid.uuid4().hex
    return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})


def twilio(request: Request, receiver: Receiver) -> Reply:
    match = re.fullmatch(r"/twilio/2010-04-01/Accounts/(\w+)/Messages\.json", request.path)
    if not match:
        return Reply(404, {"code": 20404, "message": "The requested resource was not found"})
    if request.basic_auth != (match[1], receiver.twilio_token):
        return Reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
    form = request.form
    for name in ("To", "From", "Body"):
        if not form.get(name):
            return Reply(400, {"code": 21604, "message": f"A '{name}' is required.", "status": 400})
    if not E164.match(form["To"]):
        message = f"The 'To' number {form['To']} is not a valid phone number."
        return Reply(400, {"code": 21211, "message": message, "status": 400})
    if len(form["Body"]) > 1600:
        return Reply(400, {"code": 21617, "message": "The body exceeds 1600 characters"})
    sid = "SM" + uuid.uuid4().hex
    return Reply(201, {"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]})


class TelegramHtml(HTMLParser):
    """Checks text as Telegram's parse_mode=HTML does: few tags, all closed, links with href."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problem = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TELEGRAM_TAGS or (tag == "a" and not dict(attrs).get("href")):
            self.problem = f'Unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.problem = f'Unmatched end tag "{tag}"'


def telegram(request: Request, receiver: Receiver) -> Reply:
    match = re.fullmatch(r"/telegram/bot([^/]+)/sendMessage", request.path)
    if not match or (receiver.telegram_token and match[1] != receiver.telegram_token):
        return Reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    payload = request.json if isinstance(request.json, dict) else {}
    chat, text = payload.get("chat_id"), payload.get("text") or ""
    if not chat:
        return Reply(400, telegram_error("Bad Request: chat_id is empty"))
    if receiver.telegram_chats is not None and str(chat) not in receiver.telegram_chats:
        return Reply(400, telegram_error("Bad Request: chat not found"))
    if not text.strip() or len(text) > 4096:
        return Reply(400, telegram_error("Bad Request: message text is empty or too long"))
    if payload.get("parse_mode") == "HTML":
        parser = TelegramHtml()
        parser.feed(text)
        if parser.problem or parser.stack:
            problem = parser.problem or "unclosed tag"
            return Reply(400, telegram_error(f"Bad Request: can't parse entities: {problem}"))
    result = {"message_id": len(receiver.requests), "chat": {"id": chat}, "text": text}
    return Reply(200, {"ok": True, "result": result})


def telegram_error(description: str) -> dict[str, Any]:
    return {"ok": False, "error_code": 400, "description": description}


def webhook(request: Request, receiver: Receiver) -> Reply:
    return Reply(200, "ok")


SERVICES: dict[str, Callable[[Request, Receiver], Reply]] = {
    "slack": slack,
    "discord": discord,
    "teams": teams,
    "pagerduty": pagerduty,
    "twilio": twilio,
    "telegram": telegram,
}


# --- The HTTP receiver ---------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 answering as the services do; records every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.scripts: dict[str, deque[Reply]] = {}
        self.changed = threading.Condition()
        self.twilio_token = TWILIO_TOKEN
        self.telegram_token = ""  # any token is accepted unless set
        self.telegram_chats: set[str] | None = None  # any chat is found unless set
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = receiver.parse(self.command, self.path, dict(self.headers), body)
                reply = receiver.answer(request)
                if reply.delay:
                    time.sleep(reply.delay)
                data, headers = reply.encoded()
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hooks/default", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def reply(self, path: str, *replies: int | Reply) -> None:
        """Answer the next requests to `path` so, in order; then as the service does."""
        queue = self.scripts.setdefault(path, deque())
        for item in replies:
            queue.append(Reply(item, f"scripted {item}") if isinstance(item, int) else item)

    def parse(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Request:
        parts = urlsplit(target)
        service = parts.path.split("/")[1] if parts.path.count("/") > 1 else ""
        request = Request(
            service=service if service in SERVICES else "webhook",
            method=method, path=parts.path, query=parse_qs(parts.query), headers=headers,
            body=body,
        )  # fmt: skip
        kind = (request.header("Content-Type") or "").split(";")[0]
        if kind == "application/json":
            try:
                request.json = json.loads(body)
            except ValueError:
                request.json = None
        elif kind == "application/x-www-form-urlencoded":
            request.form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        return request

    def answer(self, request: Request) -> Reply:
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()
            queue = self.scripts.get(request.path)
            if queue:
                return queue.popleft()
        return SERVICES.get(request.service, webhook)(request, self)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        """The first `count` requests, waiting (on the clock, not in sleeps) until they arrive."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} requests within {timeout} s, got {len(self.requests)}"
                    )
                self.changed.wait(left)
            return list(self.requests[:count])

    def to(self, path_prefix: str) -> list[Request]:
        """The requests whose path starts with the prefix, in arrival order."""
        with self.changed:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- The SMTP server ------------------------------------------------------------------------------


@dataclass
class Envelope:
    sender: str
    recipients: list[str]
    message: EmailMessage


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 recording every mail it accepts, parsed."""

    def __init__(self) -> None:
        # aiosmtpd logs every SMTP command at INFO: noise in a failing test's output.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.received: list[Envelope] = []
        self.refused: set[str] = set()  # recipients answered 550
        self.changed = threading.Condition()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    # aiosmtpd calls these hooks by name.
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.changed:
            self.received.append(Envelope(envelope.mail_from, list(envelope.rcpt_tos), message))
            self.changed.notify_all()
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.changed:
            return [item.message for item in self.received]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Envelope]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} mails within {timeout} s")
                self.changed.wait(left)
            return list(self.received[:count])

    def close(self) -> None:
        self.controller.stop()
