"""Heartbeat (push) monitors: jobs ping, the sweep turns pings and silences into state."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from checks import heartbeats, tasks
from checks.models import Monitor, Ping, ProbeResult, StatusChange
from monitorsite.schedule import ensure_system_schedule
from tests.conftest import drop_kept_database_connection
from tests.targets import closed_port

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
FIVE_MINUTES = {"period": 300, "grace": 60}


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def heartbeat(failure_threshold: int = 1, **options: Any) -> Monitor:
    monitor = Monitor(
        name="nightly backup",
        kind="heartbeat",
        options=options or FIVE_MINUTES,
        failure_threshold=failure_threshold,
    )
    monitor.full_clean()
    monitor.save()
    return monitor


def ping(client: Client, monitor: Monitor, suffix: str = "", **kwargs: Any) -> Any:
    response = client.get(f"/ping/{monitor.ping_key}{suffix}", **kwargs)
    assert response.status_code == 200, response.content
    return response


def sweep() -> dict[str, int]:
    return tasks.sweep_heartbeats()


def state(monitor: Monitor) -> tuple[str, str]:
    monitor.refresh_from_db()
    return monitor.status, monitor.last_reason


def flips(monitor: Monitor) -> list[tuple[str, str, str]]:
    return [
        (change.from_status, change.to_status, change.reason)
        for change in StatusChange.objects.filter(monitor=monitor).order_by("created_at", "id")
    ]


# --- Pings and state ----------------------------------------------------------------


def test_it_is_up_once_the_job_pings(client: Client, clock: time_machine.Traveller) -> None:
    monitor = heartbeat()
    response = ping(client, monitor)
    assert response.content == b"OK"
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "no-cache" in response["Cache-Control"]
    assert "no-store" in response["Cache-Control"]
    clock.shift(1)
    assert sweep() == {"pings": 1, "missed": 0}
    assert state(monitor) == ("up", "ping received")
    assert monitor.last_ping_at == T0
    result = ProbeResult.objects.get(monitor=monitor)
    assert (result.outcome, result.scheduled_at) == ("ok", T0)


def test_it_goes_down_when_the_ping_is_late_past_the_grace(
    client: Client, clock: time_machine.Traveller
) -> None:
    monitor = heartbeat()
    ping(client, monitor)
    sweep()
    clock.move_to(T0 + timedelta(minutes=6, seconds=2))  # a ping may still be arriving
    sweep()
    assert state(monitor)[0] == "up"
    clock.move_to(T0 + timedelta(minutes=7))
    sweep()
    reason = "no ping for 7 min (expected every 5 min, grace 1 min)"
    assert state(monitor) == ("down", reason)
    assert flips(monitor) == [("pending", "up", "ping received"), ("up", "down", reason)]
    missed = ProbeResult.objects.filter(monitor=monitor).exclude(outcome="ok").get()
    assert (missed.outcome, missed.reason) == ("critical", reason)
    assert missed.scheduled_at == T0 + timedelta(minutes=6)  # the deadline, not the sweep
    # Later sweeps find the same deadline: nothing is written twice.
    for seconds in (2, 4, 30):
        clock.move_to(T0 + timedelta(minutes=7, seconds=seconds))
        sweep()
    assert ProbeResult.objects.filter(monitor=monitor).count() == 2
    assert len(flips(monitor)) == 2
    # The job comes back: up at the next sweep.
    clock.move_to(T0 + timedelta(minutes=8))
    ping(client, monitor)
    sweep()
    assert state(monitor) == ("up", "ping received")


def test_a_new_monitor_stays_pending_until_its_first_deadline(
    clock: time_machine.Traveller,
) -> None:
    monitor = heartbeat()
    clock.move_to(T0 + timedelta(minutes=5, seconds=59))
    sweep()
    assert state(monitor) == ("pending", "")
    clock.move_to(T0 + timedelta(minutes=6, seconds=5))
    sweep()
    reason = "no ping received yet (expected every 5 min, grace 1 min)"
    assert state(monitor) == ("down", reason)
    assert flips(monitor) == [("pending", "down", reason)]


def test_with_the_default_threshold_two_missed_deadlines_take_it_down(
    client: Client, clock: time_machine.Traveller
) -> None:
    monitor = heartbeat(failure_threshold=2)
    ping(client, monitor)
    sweep()
    clock.move_to(T0 + timedelta(minutes=7))
    sweep()
    assert state(monitor)[0] == "up"  # one missed run so far
    clock.move_to(T0 + timedelta(minutes=11, seconds=5))
    sweep()
    assert state(monitor) == ("down", "no ping for 11 min (expected every 5 min, grace 1 min)")
    scheduled = ProbeResult.objects.filter(monitor=monitor, outcome="critical")
    assert sorted(scheduled.values_list("scheduled_at", flat=True)) == [
        T0 + timedelta(minutes=6),
        T0 + timedelta(minutes=11),
    ]


def test_a_reported_failure_takes_it_down_with_the_jobs_output(
    client: Client, clock: time_machine.Traveller
) -> None:
    monitor = heartbeat()
    response = client.post(
        f"/ping/{monitor.ping_key}/fail",
        data=b"\nbackup failed: disk full\nrsync exited\n",
        content_type="text/plain",
    )
    assert response.status_code == 200
    sweep()
    reason = "job reported failure: backup failed: disk full"
    assert state(monitor) == ("down", reason)
    assert flips(monitor) == [("pending", "down", reason)]


def test_an_exit_code_is_judged_and_shown(client: Client, clock: time_machine.Traveller) -> None:
    monitor = heartbeat()
    client.post(
        f"/ping/{monitor.ping_key}/3",
        data=b"pg_dump: connection refused",
        content_type="text/plain",
    )
    sweep()
    reason = "job reported failure (exit code 3): pg_dump: connection refused"
    assert state(monitor) == ("down", reason)
    assert ProbeResult.objects.get(monitor=monitor).outcome == "critical"
    stored = Ping.objects.get(monitor=monitor)
    assert (stored.kind, stored.exit_code, stored.method) == ("exit_code", 3, "POST")
    clock.shift(60)
    ping(client, monitor, "/0")
    sweep()
    assert state(monitor) == ("up", "ping received")


def test_pings_that_come_together_are_judged_in_order(
    client: Client, clock: time_machine.Traveller
) -> None:
    monitor = heartbeat()
    ping(client, monitor, "/fail")
    clock.shift(1)
    ping(client, monitor)
    sweep()
    assert [s for _, s, _ in flips(monitor)] == ["down", "up"]
    assert ProbeResult.objects.filter(monitor=monitor).count() == 2
    assert state(monitor)[0] == "up"


def test_a_job_that_started_and_never_finished_goes_down(
    client: Client, clock: time_machine.Traveller
) -> None:
    monitor = heartbeat(period=3600, grace=600)
    ping(client, monitor)
    clock.shift(60)
    ping(client, monitor, "/start")
    started = T0 + timedelta(seconds=60)
    sweep()
    monitor.refresh_from_db()
    assert (monitor.status, monitor.last_start_at) == ("up", started)
    clock.move_to(started + timedelta(minutes=12))
    sweep()
    reason = "started 12 min ago and has not finished (grace 10 min)"
    assert state(monitor) == ("down", reason)
    clock.move_to(started + timedelta(minutes=13))
    ping(client, monitor)
    sweep()
    assert state(monitor) == ("up", "job finished after 13 min")


def test_a_cron_schedule_is_read_in_its_time_zone(
    client: Client, clock: time_machine.Traveller
) -> None:
    # 09:00 in New York, which moves from UTC-5 to UTC-4 on 8 March 2026.
    clock.move_to(datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
    monitor = heartbeat(cron="0 9 * * *", timezone="America/New_York", grace=600)
    clock.move_to(datetime(2026, 3, 7, 14, 5, tzinfo=UTC))  # 09:05 EST
    ping(client, monitor)
    sweep()
    assert state(monitor)[0] == "up"
    clock.move_to(datetime(2026, 3, 8, 9, 30, tzinfo=UTC))  # 09:30 UTC is not 09:00 there
    sweep()
    assert state(monitor)[0] == "up"
    clock.move_to(datetime(2026, 3, 8, 13, 9, tzinfo=UTC))  # 09:09 EDT, within grace
    sweep()
    assert state(monitor)[0] == "up"
    clock.move_to(datetime(2026, 3, 8, 13, 11, tzinfo=UTC))  # 09:11 EDT
    sweep()
    status, reason = state(monitor)
    assert status == "down"
    assert reason == (
        "no ping for 23 h 6 min (expected at 2026-03-08 09:00 EDT by cron '0 9 * * *' "
        "in America/New_York, grace 10 min)"
    )
    result = ProbeResult.objects.filter(monitor=monitor, outcome="critical").get()
    assert result.scheduled_at == datetime(2026, 3, 8, 13, 10, tzinfo=UTC)


def test_a_paused_monitor_keeps_pings_but_is_not_judged(
    client: Client, clock: time_machine.Traveller
) -> None:
    monitor = heartbeat()
    Monitor.objects.filter(pk=monitor.pk).update(paused=True, status="paused")
    ping(client, monitor, "/fail")
    clock.move_to(T0 + timedelta(hours=1))
    sweep()
    monitor.refresh_from_db()
    assert (monitor.status, monitor.last_ping_at) == ("paused", T0)
    assert not ProbeResult.objects.filter(monitor=monitor).exists()


# --- The ping endpoint ----------------------------------------------------------------


def test_it_stores_the_body_truncated_to_10_kb(
    client: Client, clock: time_machine.Traveller
) -> None:
    monitor = heartbeat()
    client.post(f"/ping/{monitor.ping_key}", data=b"x" * 20_000, content_type="text/plain")
    # A character cut in half by the limit is dropped, not replaced.
    client.post(f"/ping/{monitor.ping_key}", data="é".encode() * 6000, content_type="text/plain")
    bodies = list(
        Ping.objects.filter(monitor=monitor).order_by("id").values_list("body", flat=True)
    )
    assert bodies == ["x" * 10240, "é" * 5120]


def test_it_records_who_pinged(client: Client, clock: time_machine.Traveller) -> None:
    monitor = heartbeat()
    ping(
        client,
        monitor,
        HTTP_USER_AGENT="curl/8.5.0 " + "x" * 500,
        REMOTE_ADDR="203.0.113.7",
        HTTP_X_FORWARDED_FOR="198.51.100.1",
    )
    stored = Ping.objects.get(monitor=monitor)
    assert stored.remote_addr == "203.0.113.7"  # not what the caller claims in a header
    assert stored.user_agent.startswith("curl/8.5.0 ") and len(stored.user_agent) == 200
    assert (stored.kind, stored.method, stored.received_at, stored.body) == (
        "success", "GET", T0, ""
    )  # fmt: skip


def test_unknown_and_malformed_keys_get_identical_404s(client: Client) -> None:
    other = Monitor.objects.create(name="api", kind="http", target="http://127.0.0.1:9/")
    monitor = heartbeat()
    paths = [
        "/ping/5a1f0b52-7a6c-4a3d-9a43-6f3b2b0b4a11",
        "/ping/5a1f0b52-7a6c-4a3d-9a43-6f3b2b0b4a11/fail",
        "/ping/not-a-uuid",
        "/ping/not-a-uuid/start",
        f"/ping/{other.ping_key}",  # a key, but not of a heartbeat monitor
        f"/ping/{monitor.ping_key}/256",
        f"/ping/{monitor.ping_key}/done",
    ]
    responses = [client.get(path) for path in paths] + [
        client.post(paths[0], data=b"x", content_type="text/plain")
    ]
    shapes = {
        (r.status_code, r.content, r["Content-Type"], r["Content-Length"], r["Cache-Control"])
        for r in responses
    }
    assert len(shapes) == 1
    assert next(iter(shapes))[:2] == (404, b"not found")
    assert not Ping.objects.exists()


def test_head_and_a_trailing_slash_work(client: Client) -> None:
    monitor = heartbeat()
    assert client.head(f"/ping/{monitor.ping_key}").status_code == 200
    assert client.get(f"/ping/{monitor.ping_key}/start/").status_code == 200
    assert list(Ping.objects.order_by("id").values_list("method", "kind")) == [
        ("HEAD", "success"),
        ("GET", "start"),
    ]
    assert client.put(f"/ping/{monitor.ping_key}").status_code == 405


def test_a_ping_is_one_query(client: Client, django_assert_num_queries: Any) -> None:
    monitor = heartbeat()
    with django_assert_num_queries(1):
        client.post(f"/ping/{monitor.ping_key}/1", data=b"failed", content_type="text/plain")
    with django_assert_num_queries(1):
        assert client.get("/ping/5a1f0b52-7a6c-4a3d-9a43-6f3b2b0b4a11").status_code == 404
    with django_assert_num_queries(0):
        assert client.get("/ping/not-a-uuid").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_ping_is_stored_when_the_database_dropped_the_kept_connection(client: Client) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("a connection the server drops is a PostgreSQL matter")
    monitor = heartbeat()
    ping(client, monitor)
    drop_kept_database_connection()
    ping(client, monitor, "/fail")
    assert list(Ping.objects.order_by("id").values_list("kind", flat=True)) == ["success", "fail"]


def test_it_limits_pings_per_key(
    client: Client, clock: time_machine.Traveller, django_assert_num_queries: Any
) -> None:
    monitor, neighbour = heartbeat(), heartbeat()
    for _ in range(60):
        ping(client, monitor)
    with django_assert_num_queries(0):
        response = client.get(f"/ping/{monitor.ping_key}")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "no-cache" in response["Cache-Control"]
    assert Ping.objects.filter(monitor=monitor).count() == 60
    ping(client, neighbour)  # the limit is per key
    clock.shift(60)
    ping(client, monitor)


def test_the_limiter_lets_pings_through_when_the_cache_is_down(
    client: Client, settings: Any
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    monitor = heartbeat()
    for _ in range(3):
        ping(client, monitor)
    assert Ping.objects.filter(monitor=monitor).count() == 3


# --- Sweeping safely ---------------------------------------------------------------------


def test_sweeping_twice_processes_each_ping_once(
    client: Client, clock: time_machine.Traveller
) -> None:
    monitor = heartbeat()
    for suffix in ("", "/start", "/fail", ""):
        clock.shift(1)
        ping(client, monitor, suffix)
    clock.shift(1)
    assert sweep() == {"pings": 4, "missed": 0}
    assert sweep() == {"pings": 0, "missed": 0}
    assert ProbeResult.objects.filter(monitor=monitor).count() == 3  # a start is not a result
    assert [to for _, to, _ in flips(monitor)] == ["up", "down", "up"]
    assert not Ping.objects.unprocessed().exists()


def test_a_claimed_ping_is_not_claimed_again(client: Client, clock: time_machine.Traveller) -> None:
    monitor = heartbeat()
    ping(client, monitor)
    ids = list(Ping.objects.values_list("id", flat=True))
    assert heartbeats.claim(ids, T0) == ids
    assert heartbeats.claim(ids, T0) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_record_each_ping_once(client: Client) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("threads share the in-memory test database's table locks; use PostgreSQL")
    monitors = [heartbeat() for _ in range(20)]
    for monitor in monitors:
        ping(client, monitor, "/fail")
        ping(client, monitor)
    barrier = threading.Barrier(2)
    reports: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            reports.append(sweep())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(report["pings"] for report in reports) == 40
    assert ProbeResult.objects.count() == 40
    assert StatusChange.objects.count() == 40  # pending → down → up, once each
    assert not Ping.objects.unprocessed().exists()
    assert set(Monitor.objects.values_list("status", flat=True)) == {"up"}


# --- Options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "period: set period (seconds between pings, at least 10) or cron"),
        ({"period": 5}, "period: must be between 10 s and 366 days (in seconds), got 5"),
        ({"period": 60, "grace": 0}, "grace: must be between 10 s and 366 days (in seconds)"),
        ({"period": 60, "cron": "* * * * *"}, "cron: set either period or cron, not both"),
        ({"cron": "61 * * * *"}, "cron: '61 * * * *' is not a valid cron expression"),
        ({"cron": "*/5 * * * * *"}, "cron: '*/5 * * * * *' must have 5 fields"),
        ({"cron": "0 0 30 2 *"}, "cron: '0 0 30 2 *' never matches a date"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone: 'Mars/Olympus' is not"),
        ({"period": 60, "timezone": "Europe/Berlin"}, "timezone: is only used with cron"),
        ({"period": 60, "grace": "soon"}, "grace: must be a number, got 'soon'"),
        ({"period": 60, "every": 5}, "every: unknown option"),
    ],
)
def test_bad_options_name_the_option_and_the_problem(options: dict[str, Any], message: str) -> None:
    monitor = Monitor(name="job", kind="heartbeat", options=options)
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    assert any(m.startswith(message) for m in caught.value.message_dict["options"]), caught.value


def test_a_heartbeat_has_no_target() -> None:
    monitor = Monitor(
        name="job", kind="heartbeat", target="http://example.com", options=FIVE_MINUTES
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    assert caught.value.message_dict["target"][0].startswith("must be blank")


def test_good_options_are_accepted() -> None:
    for options in (
        {"period": 86400},
        {"period": 300, "grace": 600},
        {"cron": "30 2 * * mon-fri", "timezone": "Europe/Berlin", "grace": 3600},
        {"cron": "@daily"},
    ):
        Monitor(name="job", kind="heartbeat", options=options).full_clean()


# --- The system schedule ------------------------------------------------------------------------


def test_the_sweep_runs_every_two_seconds_also_on_existing_installs() -> None:
    ensure_system_schedule(IntervalSchedule, PeriodicTask)
    task = PeriodicTask.objects.get(task="checks.tasks.sweep_heartbeats")
    assert (task.interval.every, task.interval.period) == (2, "seconds")
    # An install from before: the migration moves its 10 s entry to 2 s.
    ten, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.filter(pk=task.pk).update(interval=ten)
    migration = importlib.import_module("monitorsite.migrations.0003_sweep_heartbeats_every_2s")
    migration.move(10, 2)(apps, None)
    task.refresh_from_db()
    assert (task.interval.every, task.expire_seconds) == (2, 5)
