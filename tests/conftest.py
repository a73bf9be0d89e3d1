"""Shared fixtures: real servers on loopback, and the fleet's heartbeats."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from monitorsite.models import Heartbeat
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


@pytest.fixture(autouse=True)
def fresh_metrics() -> Iterator[None]:
    """Counts a test recorded but never flushed must not leak into the next test."""
    from monitorsite import metrics

    metrics.recorder.pending.clear()
    yield
    metrics.recorder.pending.clear()
