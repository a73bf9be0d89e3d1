"""/health/live and /health/ready, as a load balancer and an operator see them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from monitorsite.celery import app as celery_app
from monitorsite.models import Heartbeat
from tests.conftest import RedisServer
from tests.targets import silent_tcp_server


@pytest.fixture
def broker_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Point the Celery app's broker somewhere else for one test."""

    def point(url: str) -> None:
        monkeypatch.setattr(celery_app.conf, "broker_read_url", url)

    yield point


def redis_cache(url: str) -> dict[str, dict[str, object]]:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


def test_it_answers_live_without_touching_the_database(client: Client) -> None:
    # No database fixture: pytest-django makes any query here an error.
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_is_ready_with_every_component_listed(
    client: Client, fresh_heartbeats: None, redis_server: RedisServer, broker_at
) -> None:
    broker_at(redis_server.url)
    with override_settings(REDIS_URL=redis_server.url, CACHES=redis_cache(redis_server.url)):
        response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["components"]) == {
        "database",
        "broker",
        "beat",
        "workers",
        "dispatch",
        "cache",
    }
    assert all(c["status"] == "ok" for c in body["components"].values())
    assert body["components"]["workers"]["workers"] == ["worker@test"]
    assert body["components"]["broker"]["queue_depth"] == {
        "dispatch": 0,
        "probes": 0,
        "notify": 0,
        "default": 0,
    }


def test_it_turns_503_naming_broker_and_cache_when_redis_stops(
    client: Client, fresh_heartbeats: None, redis_server: RedisServer, broker_at
) -> None:
    broker_at(redis_server.url)
    with override_settings(REDIS_URL=redis_server.url, CACHES=redis_cache(redis_server.url)):
        assert client.get("/health/ready").status_code == 200
        redis_server.stop()
        response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "failing"
    assert body["failing"] == ["broker", "cache"]
    assert "broker:" in body["error"] and "cache:" in body["error"]
    assert "refused" in body["components"]["broker"]["error"].lower()
    assert body["components"]["database"]["status"] == "ok"


@pytest.fixture
def silent_server() -> Iterator[int]:
    with silent_tcp_server() as port:
        yield port


@override_settings(HEALTH_CHECK_TIMEOUT=1.0)
def test_it_never_hangs_on_a_broker_that_does_not_answer(
    client: Client, fresh_heartbeats: None, silent_server: int, broker_at
) -> None:
    broker_at(f"redis://127.0.0.1:{silent_server}/0")
    response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 503
    assert body["failing"] == ["broker"]
    assert body["components"]["broker"]["error"] == "no answer within 1 s"


def test_it_names_a_stale_system_tick(client: Client, fresh_heartbeats: None) -> None:
    Heartbeat.objects.filter(kind=Heartbeat.Kind.BEAT).update(
        seen_at=timezone.now() - timedelta(seconds=60)
    )
    response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 503
    assert "beat" in body["failing"]
    assert body["components"]["beat"]["error"].startswith("no system tick for 60 s")


def test_it_reports_missing_workers(client: Client, fresh_heartbeats: None) -> None:
    Heartbeat.objects.filter(kind=Heartbeat.Kind.WORKER).update(
        seen_at=timezone.now() - timedelta(minutes=5)
    )
    body = client.get("/health/ready").json()
    assert "workers" in body["failing"]
    assert body["components"]["workers"]["error"] == "no worker heartbeat in the last 30 s"


def test_it_reports_a_fleet_that_never_ticked(client: Client, transactional_db: None) -> None:
    body = client.get("/health/ready").json()
    assert body["components"]["beat"]["error"] == "no system tick recorded yet: is beat running?"


def test_it_fails_dispatch_when_probes_start_late(client: Client, fresh_heartbeats: None) -> None:
    from checks.models import Monitor, ProbeResult, Region

    monitor = Monitor.objects.create(name="api", kind="http", target="http://127.0.0.1/")
    now = timezone.now()
    for n, lag in enumerate([0.05] * 90 + [9.0] * 10):
        slot = now - timedelta(seconds=50, milliseconds=n)
        ProbeResult.objects.create(
            monitor=monitor,
            region=Region.default(),
            scheduled_at=slot,
            started_at=slot + timedelta(seconds=lag),
            outcome="ok",
        )
    body = client.get("/health/ready").json()
    assert body["failing"] == ["dispatch"]
    assert body["components"]["dispatch"]["error"] == (
        "probes start late: lag p99 9.0 s over the last minute (limit 5 s); add probe workers"
    )
    ProbeResult.objects.filter(started_at__gt=now - timedelta(seconds=45)).update(
        started_at=now - timedelta(seconds=49)
    )
    dispatch = client.get("/health/ready").json()["components"]["dispatch"]
    assert dispatch["status"] == "ok"
    assert dispatch["probes_last_minute"] == 100
