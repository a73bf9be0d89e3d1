"""The postgres probe against this machine's PostgreSQL, judged as a user reads it.

PostgreSQL here trusts loopback logins, so a refused password is exercised
against a small server on loopback that speaks just enough of the protocol
to ask for a password and refuse it.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings

from checks.models import Monitor
from checks.services import run_now
from tests.probing import check, everything_said, saved_monitor, shown_pct
from tests.targets import closed_port, silent_tcp_server

pytestmark = pytest.mark.django_db

SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
PASSWORD = "s3cr:t/p@ss%word"
# The same password as it must be written inside a URL.
ENCODED = "s3cr%3At%2Fp%40ss%25word"


def pg_monitor(target: str = SERVER, timeout: float = 5, **options: object) -> Monitor:
    return saved_monitor("postgres", target, "db", options=options, timeout=timeout)


@contextmanager
def held_connections(count: int) -> Iterator[None]:
    held = [psycopg.connect(SERVER) for _ in range(count)]
    try:
        yield
    finally:
        for conn in held:
            conn.close()


def test_it_reports_select_1_latency_and_connection_use() -> None:
    with held_connections(3):
        run, verdict = run_now(pg_monitor())
    assert run.observation is not None
    values = run.observation.values
    assert verdict.outcome == "ok"
    # Three held sessions and the probe's own, at least (other tests may be running).
    assert values["clients"] >= 4
    assert values["connection_pct"] == round(values["clients"] / 100 * 100, 1)
    assert re.fullmatch(
        rf"SELECT 1 in \d+ ms, {values['clients']} of 100 connections "
        rf"\({values['connection_pct']:g}%\)",
        verdict.reason,
    )
    assert run.observation.info["max_connections"] == 100
    assert run.observation.info["server_version"].startswith("15.")


def test_it_goes_yellow_then_red_as_connections_fill_the_pool() -> None:
    run, verdict = run_now(pg_monitor(connections_warning_pct=0.1))
    pct = run.observation.values["connection_pct"]
    assert (verdict.outcome, verdict.reason) == (
        "warning",
        f"connections used {shown_pct(pct)} ≥ 0.1%",
    )
    # Against a pool of one, the probe's own session alone fills it.
    run, verdict = run_now(pg_monitor(pool_size=1))
    clients = run.observation.values["clients"]
    assert (verdict.outcome, verdict.reason) == (
        "critical",
        f"connections used {clients * 100}% ≥ 95%",
    )
    assert run.observation.summary.endswith(f", {clients} of 1 connections ({clients * 100}%)")


def test_it_judges_a_custom_query_read_only() -> None:
    monitor = pg_monitor(
        query="SELECT count(*) FROM generate_series(1, 12)", query_warning=10, query_critical=20
    )
    run, verdict = run_now(monitor)
    assert (verdict.outcome, verdict.reason) == ("warning", "query value 12 ≥ 10")
    assert run.observation.values["query_value"] == 12
    assert run.observation.summary.endswith(", query value 12")
    monitor.options = {"query": "SELECT 0.5::numeric", "query_critical": 0.25}
    monitor.save()
    assert check(monitor) == ("critical", "query value 0.5 ≥ 0.25")
    monitor.options = {
        "query": "SELECT 'replica'",
        "query_operator": "eq",
        "query_critical": "primary",
    }
    monitor.save()
    assert check(monitor) == ("critical", 'query value is "replica", expected "primary"')


def test_it_reports_a_query_without_rows_as_missing() -> None:
    monitor = pg_monitor(query="SELECT 1 WHERE false", query_critical=5)
    run, verdict = run_now(monitor)
    assert (verdict.outcome, verdict.reason) == ("critical", "query value is missing")
    assert run.observation.summary.endswith("the query returned no rows")


def test_it_never_lets_the_query_write() -> None:
    dsn = "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**connection.settings_dict)
    monitor = pg_monitor(
        dsn, query="WITH gone AS (DELETE FROM checks_monitor RETURNING 1) SELECT count(*) FROM gone"
    )
    assert check(monitor) == (
        "error",
        "the query tried to write; queries run read-only",
    )
    monitor.options = {"query": "SELECT 1; SET TRANSACTION READ WRITE; DELETE FROM checks_monitor"}
    monitor.save()
    assert check(monitor) == ("error", "the query must be a single statement")
    assert Monitor.objects.filter(pk=monitor.pk).exists()


def test_it_stops_a_slow_query_before_the_deadline() -> None:
    outcome, reason = check(pg_monitor(query="SELECT pg_sleep(5)", timeout=2))
    assert outcome == "error"
    assert re.fullmatch(r"the query was stopped after \d+ ms \(statement_timeout\)", reason)


def test_it_reports_a_failing_query() -> None:
    assert check(pg_monitor(query="SELECT count(*) FROM no_such_jobs")) == (
        "error",
        'the query failed: relation "no_such_jobs" does not exist',
    )


def test_it_names_an_unknown_database_and_role_without_the_password() -> None:
    run, verdict = run_now(pg_monitor(f"postgres://postgres:{ENCODED}@127.0.0.1:5432/no_such_db"))
    assert (verdict.outcome, verdict.reason) == (
        "error",
        'cannot log in to 127.0.0.1:5432: database "no_such_db" does not exist',
    )
    assert PASSWORD not in everything_said(run, verdict.reason)
    outcome, reason = check(pg_monitor(f"postgres://no_such_role:{ENCODED}@127.0.0.1/postgres"))
    assert (outcome, reason) == (
        "error",
        'cannot log in to 127.0.0.1:5432: role "no_such_role" does not exist',
    )


def test_it_never_shows_the_password_of_a_working_dsn() -> None:
    run, verdict = run_now(
        pg_monitor(f"postgres://postgres:{ENCODED}@localhost:5432/postgres", query="SELECT 1")
    )
    assert verdict.outcome == "ok"
    said = everything_said(run, verdict.reason)
    assert PASSWORD not in said
    assert ENCODED not in said
    assert run.observation.info["address"] == "127.0.0.1"


def test_it_keeps_the_password_out_of_validation_errors() -> None:
    monitor = Monitor(name="db", kind="postgres", target=f"postgres://u:{ENCODED}@db:99999/x")
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    assert caught.value.message_dict["target"] == ["the port must be a number from 1 to 65535"]
    assert PASSWORD not in str(caught.value) and ENCODED not in str(caught.value)


@dataclass
class PasswordServer:
    """Asks every client for a cleartext password and refuses it."""

    port: int
    passwords: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _refuse_password(conn: socket.socket, server: PasswordServer) -> None:
    while True:
        length, code = struct.unpack("!ii", _read(conn, 8))
        body = _read(conn, length - 8)
        if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
            conn.sendall(b"N")
            continue
        break
    words = body.split(b"\0")
    startup = dict(zip(words[::2], words[1::2], strict=False))
    user = startup.get(b"user", b"").decode()
    server.users.append(user)
    conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
    if _read(conn, 1) != b"p":
        return
    (length,) = struct.unpack("!i", _read(conn, 4))
    server.passwords.append(_read(conn, length - 4).rstrip(b"\0").decode())
    message = f'password authentication failed for user "{user}"'.encode()
    fields = b"SFATAL\0VFATAL\0C28P01\0M" + message + b"\0\0"
    conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)


@contextmanager
def password_server() -> Iterator[PasswordServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    server = PasswordServer(listener.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                with suppress(ConnectionError, TimeoutError):
                    _refuse_password(conn, server)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)


def test_it_reports_a_refused_password_without_showing_it() -> None:
    with password_server() as server:
        target = f"postgres://watchpost:{ENCODED}@127.0.0.1:{server.port}/app"
        run, verdict = run_now(pg_monitor(target))
    assert (verdict.outcome, verdict.reason) == (
        "error",
        f"cannot log in to 127.0.0.1:{server.port}: "
        'password authentication failed for user "watchpost"',
    )
    assert server.passwords == [PASSWORD]  # sent decoded, exactly as typed
    assert PASSWORD not in everything_said(run, verdict.reason)


def test_it_never_sends_the_workers_own_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "the-workers-own-secret")
    with password_server() as server:
        outcome, reason = check(pg_monitor(f"postgres://watchpost@127.0.0.1:{server.port}/app"))
    assert (outcome, reason) == (
        "error",
        f"127.0.0.1:{server.port} asks for a password and the DSN has none",
    )
    assert server.users == ["watchpost"]
    assert server.passwords == []


def test_it_reports_a_refused_connection() -> None:
    port = closed_port()
    assert check(pg_monitor(f"postgres://postgres@127.0.0.1:{port}/postgres")) == (
        "error",
        f"connection refused by 127.0.0.1:{port}",
    )


def test_it_gives_up_on_a_server_that_never_answers() -> None:
    with silent_tcp_server() as port:
        target = f"postgres://postgres:{ENCODED}@127.0.0.1:{port}/postgres"
        assert check(pg_monitor(target, timeout=1)) == ("error", "timed out after 1 s")


def test_it_refuses_cloud_metadata_and_denied_addresses() -> None:
    outcome, reason = check(pg_monitor("postgres://postgres@169.254.169.254:5432/postgres"))
    assert (outcome, reason) == (
        "error",
        "connecting to 169.254.169.254 is not allowed (PROBE_DENY_NETWORKS); "
        "add it to PROBE_ALLOW_NETWORKS to probe it",
    )
    with override_settings(PROBE_DENY_NETWORKS=["127.0.0.0/8", "::1/128"]):
        outcome, reason = check(pg_monitor("postgres://postgres@localhost:5432/postgres"))
    assert outcome == "error"
    assert reason.startswith("connecting to localhost (127.0.0.1")


def test_it_names_each_bad_target_and_option() -> None:
    cases = {
        "mysql://u@db/app": "must be a postgres:// or postgresql:// URL with a host, "
        "e.g. postgres://watchpost:secret@db.internal:5432/app",
        "postgres://db.internal/app": "name the user to log in as, "
        "e.g. postgres://watchpost:secret@db.internal:5432/app",
        "postgres://u@db/app?service=prod": "unsupported DSN parameter 'service' "
        "(supported: application_name, sslmode)",
        "postgres://u@db/app?sslmode=always": "sslmode must be one of disable, allow, prefer, "
        "require, verify-ca, verify-full",
    }
    for target, message in cases.items():
        with pytest.raises(ValidationError) as caught:
            Monitor(name="db", kind="postgres", target=target).full_clean()
        assert caught.value.message_dict["target"] == [message], target
    monitor = Monitor(
        name="db",
        kind="postgres",
        target=SERVER,
        options={
            "connections_warning_pct": 96,
            "query": "DELETE FROM jobs",
            "query_warning": "many",
            "colour": "red",
        },
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    assert caught.value.message_dict["options"] == [
        "colour: unknown option (known: connections_critical_pct, connections_warning_pct, "
        "latency_critical_ms, latency_warning_ms, pool_size, query, query_critical, "
        "query_operator, query_warning)",
        "connections_warning_pct: must be below connections_critical_pct (95 unless set)",
        "query: must be one SELECT statement (or WITH ... SELECT)",
        "query_warning: must be a number for query_operator lt, got 'many'",
    ]
