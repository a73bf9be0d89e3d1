"""Shared fixtures: real servers on loopback, and the fleet's heartbeats."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from monitorsite.models import Heartbeat
from tests.receivers import TWILIO_FROM, TWILIO_SID, TWILIO_TOKEN, Receiver, SmtpServer
from tests.targets import HttpTarget


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Give each test run its own database, so two runs on one machine never collide."""
    from django.conf import settings

    for alias in settings.DATABASES.values():
        base = alias.get("TEST", {}).get("NAME") or f"test_{alias['NAME']}"
        if alias["ENGINE"].endswith("sqlite3"):
            continue
        alias.setdefault("TEST", {})["NAME"] = f"{base}_{os.getpid()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """A redis-server of the test's own, so the test can stop it."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; the tests need it (see README.md)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    server = RedisServer(port, process)
    yield server
    if process.poll() is None:
        server.stop()


@pytest.fixture
def fresh_heartbeats(transactional_db: None) -> None:
    """The fleet as it looks while beat and one worker are running."""
    Heartbeat.objects.record(Heartbeat.Kind.BEAT, "system-tick")
    Heartbeat.objects.record(Heartbeat.Kind.WORKER, "worker@test", {"queues": ["default"]})


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    """An HTTP server on loopback whose answers the test scripts."""
    server = HttpTarget()
    yield server
    server.close()


@pytest.fixture(params=["lean", "aiohttp"])
def http_client(request: pytest.FixtureRequest, settings: Any) -> str:
    """Runs the test once with each HTTP client probes can use (PROBE_HTTP_CLIENT)."""
    settings.PROBE_HTTP_CLIENT = request.param
    return str(request.param)


@pytest.fixture(autouse=True)
def fresh_metrics() -> Iterator[None]:
    """Counts a test recorded but never flushed must not leak into the next test."""
    from monitorsite import metrics

    metrics.recorder.pending.clear()
    yield
    metrics.recorder.pending.clear()


# --- Notification receivers (alerts, and incidents' paging tests) --------------------------------


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    """The services notifications go to, on loopback (see tests/receivers.py).

    Slack, Discord, Teams and webhook channels take `receiver.url("/slack/...")`
    and the like; PagerDuty, Twilio and Telegram are reached through their
    settings, pointed here, with a Twilio account the receiver accepts.
    """
    server = Receiver()
    settings.NOTIFY_ALLOW_PRIVATE = True
    settings.PAGERDUTY_EVENTS_URL = server.url("/pagerduty/v2/enqueue")
    settings.TWILIO_API_URL = server.url("/twilio")
    settings.TELEGRAM_API_URL = server.url("/telegram")
    settings.TWILIO_ACCOUNT_SID = TWILIO_SID
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.TWILIO_FROM_NUMBER = TWILIO_FROM
    yield server
    server.close()


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[SmtpServer]:
    """An SMTP server on loopback that Django's mail goes to; `.messages` are parsed emails."""
    server = SmtpServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield server
    server.close()


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Static files collected as `manage.py prepare` does, into a directory of our own.

    Outside DEBUG the admin's pages name hashed files from the manifest and
    WhiteNoise serves what was collected, so this is what production serves.
    Modules whose pages are rendered use it: `pytest.mark.usefixtures("collected_static")`.
    """
    from django.core.management import call_command
    from django.test import override_settings

    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=root):
        call_command("collectstatic", interactive=False, verbosity=0)
        yield root


def drop_kept_database_connection() -> None:
    """Terminate the PostgreSQL backend of this thread's kept connection, as a server restart does.

    The connection object stays as it was, so the next query finds it dead.
    """
    from django.db import connection, connections

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()

    def terminate() -> None:  # from another connection: a backend cannot outlive its own kill
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        finally:
            connections.close_all()

    killer = threading.Thread(target=terminate)
    killer.start()
    killer.join(timeout=30)
