"""Errors reach Sentry with credentials masked, and everything else still readable."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitorsite.sentry import MASK, scrub, scrub_event, scrub_text
from tests.monitorsite import sentry_leaky_app as leaky

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Envelope:
    raw: str
    items: list[tuple[dict[str, Any], bytes]]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for header, body in self.items if header.get("type") == "event"]


def parse_envelope(body: bytes) -> Envelope:
    """Split a Sentry envelope: a header line, then item headers each followed by a payload."""
    header_end = body.index(b"\n") if b"\n" in body else len(body)
    offset = header_end + 1
    items = []
    while offset < len(body):
        line_end = body.find(b"\n", offset)
        item_header = json.loads(body[offset : line_end if line_end != -1 else len(body)])
        offset = line_end + 1 if line_end != -1 else len(body)
        if "length" in item_header:
            payload = body[offset : offset + item_header["length"]]
            offset += item_header["length"] + 1
        else:
            line_end = body.find(b"\n", offset)
            payload = body[offset : line_end if line_end != -1 else len(body)]
            offset = line_end + 1 if line_end != -1 else len(body)
        items.append((item_header, payload))
    return Envelope(raw=body.decode(), items=items)


def decode_body(body: bytes, encoding: str) -> bytes:
    # sentry-sdk compresses with brotli when the Brotli module is installed, else gzip.
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]

        return brotli.decompress(body)
    if encoding in ("", "identity"):
        return body
    raise AssertionError(f"unexpected Content-Encoding {encoding!r}")


@dataclass
class FakeSentry:
    """A loopback stand-in for sentry.io's ingest endpoint that keeps what it is sent."""

    port: int
    envelopes: list[Envelope] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def events(self) -> list[dict[str, Any]]:
        return [event for envelope in self.envelopes for event in envelope.events()]


@pytest.fixture(scope="module")
def fake_sentry() -> Iterator[FakeSentry]:
    sentry = FakeSentry(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            if self.path.rstrip("/") != "/api/1/envelope":
                sentry.rejected.append(self.path)
                self.send_response(404)
            else:
                encoding = self.headers.get("Content-Encoding", "")
                sentry.envelopes.append(parse_envelope(decode_body(body, encoding)))
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sentry.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sentry
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def run_failing_app(sentry: FakeSentry, data_dir: Path) -> None:
    """Run the failing view and task in a fresh process, as a deployment would."""
    env = {
        name: value
        for name, value in os.environ.items()
        # The embedded default (SQLite, filesystem broker) needs no server, and a
        # proxy must not carry the events anywhere but the loopback server.
        if name.upper()
        not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "HTTP_PROXY", "HTTPS_PROXY"}
        and not name.upper().startswith("SENTRY_")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="monitorsite.settings",
        WATCHPOST_DATA_DIR=str(data_dir),
        SENTRY_DSN=sentry.dsn,
        SENTRY_ENVIRONMENT="test",
        NO_PROXY="127.0.0.1",
    )
    completed = subprocess.run(
        [sys.executable, "-c", "from tests.monitorsite.sentry_leaky_app import main; main()"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr


def error_of(events: list[dict[str, Any]], type_name: str) -> dict[str, Any]:
    matching = [e for e in events if e["exception"]["values"][-1]["type"] == type_name]
    assert len(matching) == 1, [e["exception"]["values"][-1]["type"] for e in events]
    return matching[0]


def frame_vars(event: dict[str, Any], function: str) -> dict[str, Any]:
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    return next(frame["vars"] for frame in frames if frame["function"] == function)


@pytest.fixture(scope="module")
def sent_to_sentry(fake_sentry: FakeSentry, tmp_path_factory: pytest.TempPathFactory) -> FakeSentry:
    # One run serves every test below: a fresh process and Django setup cost a second or two.
    run_failing_app(fake_sentry, tmp_path_factory.mktemp("data"))
    assert fake_sentry.rejected == []
    return fake_sentry


def test_it_reports_a_failing_view_with_its_secrets_masked(sent_to_sentry: FakeSentry) -> None:
    event = error_of(sent_to_sentry.events(), "ProbeViewError")

    assert event["exception"]["values"][-1]["value"] == (
        "probe of postgres://app:[Filtered]@db.internal:5432/app failed for "
        "/probe-check/?token=[Filtered]&page=2 with Bearer [Filtered]; alerting [Filtered] now"
    )
    local_vars = frame_vars(event, "failing_view")
    assert local_vars["dsn"] == MASK
    assert local_vars["webhook_url"] == MASK
    assert local_vars["target"] == "'postgres://app:[Filtered]@db.internal:5432/app'"
    assert local_vars["upstream_header"] == "'Bearer [Filtered]'"
    assert event["request"]["url"].endswith(leaky.VIEW_PATH)
    assert event["request"]["query_string"] == "token=[Filtered]&page=2"
    assert event["request"]["headers"]["Authorization"] == MASK
    assert event["request"]["headers"]["X-Probe-Target"] == (
        "postgres://app:[Filtered]@db.internal:5432/app"
    )


def test_it_reports_a_failing_task_with_its_secrets_masked(sent_to_sentry: FakeSentry) -> None:
    event = error_of(sent_to_sentry.events(), "DeliveryTaskError")

    assert event["exception"]["values"][-1]["value"] == (
        "delivery to https://api.telegram.org/bot[Filtered]/sendMessage failed, "
        "then [Filtered] ; cache redis://:[Filtered]@cache.internal:6379/0"
    )
    local_vars = frame_vars(event, "failing_delivery")
    assert local_vars["cache_url"] == "'redis://:[Filtered]@cache.internal:6379/0'"
    assert local_vars["bot_url"] == "'https://api.telegram.org/bot[Filtered]/sendMessage'"
    assert MASK in local_vars["fallback"]


def test_it_sends_no_secret_anywhere_in_the_envelopes(sent_to_sentry: FakeSentry) -> None:
    raw = "\n".join(envelope.raw for envelope in sent_to_sentry.envelopes)

    assert len(sent_to_sentry.events()) == 2
    for secret in leaky.SECRETS:
        assert secret not in raw
    assert MASK in raw
    # Only the secret is masked: where the failure happened stays readable.
    assert "db.internal" in raw
    assert "cache.internal" in raw


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "could not connect to postgres://app:hunter2@db.internal:5432/app",
            "could not connect to postgres://app:[Filtered]@db.internal:5432/app",
        ),
        ("redis://:s3cret@cache:6379/0", "redis://:[Filtered]@cache:6379/0"),
        ("Authorization: Bearer abcdef123456789", "Authorization: Bearer [Filtered]"),
        ("header token abcdefgh12345678 sent", "header token [Filtered] sent"),
        ("post to https://hooks.slack.com/services/T0/B0/XyZ failed", "post to [Filtered] failed"),
        (
            "post to https://discord.com/api/webhooks/123/AbC-dEf failed",
            "post to [Filtered] failed",
        ),
        (
            "post to https://ptb.discordapp.com/api/webhooks/123/AbC failed",
            "post to [Filtered] failed",
        ),
        (
            "post to https://acme.webhook.office.com/webhookb2/abc/IncomingWebhook/x failed",
            "post to [Filtered] failed",
        ),
        (
            "GET https://api.telegram.org/bot123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe",
            "GET https://api.telegram.org/bot[Filtered]/getMe",
        ),
        ("slack token xoxb-1234567890-abcdef", "slack token [Filtered]"),
        ("GET /status?token=abc123&page=2", "GET /status?token=[Filtered]&page=2"),
        ("GET /x?page=2&api_key=abc123#top", "GET /x?page=2&api_key=[Filtered]#top"),
        ("token=abc123&page=2", "token=[Filtered]&page=2"),
    ],
)
def test_it_masks_secrets_in_text_and_keeps_the_rest(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


def test_it_leaves_text_without_secrets_alone() -> None:
    text = "GET https://example.com/status?page=2 answered 503 after 1.2 s"

    assert scrub_text(text) == text


def test_it_masks_values_under_secret_keys_whatever_they_look_like() -> None:
    scrubbed = scrub(
        {
            "password": "plain",
            "api_key": "abc",
            "X-Webhook-Url": "https://example.com/x",
            "nested": {"Session": {"id": 1}, "monitor": "homepage"},
            "empty_token": "",
        }
    )

    assert scrubbed == {
        "password": MASK,
        "api_key": MASK,
        "X-Webhook-Url": MASK,
        "nested": {"Session": MASK, "monitor": "homepage"},
        "empty_token": "",
    }


def test_it_masks_header_pairs_and_text_inside_lists() -> None:
    scrubbed = scrub(
        [
            ["Authorization", "Basic dXNlcjpwYXNz"],
            ["Cookie", "sessionid=abc"],
            ["Accept", "text/html"],
            "connecting to mysql://root:toor@db/app",
        ]
    )

    assert scrubbed == [
        ["Authorization", MASK],
        ["Cookie", MASK],
        ["Accept", "text/html"],
        "connecting to mysql://root:[Filtered]@db/app",
    ]


def test_it_scrubs_a_whole_event() -> None:
    event = {
        "message": "alert via https://hooks.slack.com/services/T0/B0/secret failed",
        "request": {"headers": {"Authorization": "Bearer abcdefgh12345678", "Host": "watchpost"}},
        "extra": {"target": "postgres://u:pw@db/x"},
    }

    assert scrub_event(event, None) == {
        "message": "alert via [Filtered] failed",
        "request": {"headers": {"Authorization": MASK, "Host": "watchpost"}},
        "extra": {"target": "postgres://u:[Filtered]@db/x"},
    }
