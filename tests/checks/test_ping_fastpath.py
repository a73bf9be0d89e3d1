"""Heartbeat pings on the WSGI fast path answer and record exactly as through Django."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wsgiref.util
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.core.cache import caches
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection, connections
from django.test import override_settings

from checks import fastpath
from checks.models import Monitor, Ping
from monitorsite import wsgi
from tests.conftest import drop_kept_database_connection, free_port

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
UNKNOWN_KEY = "5a1f0b52-7a6c-4a3d-9a43-6f3b2b0b4a11"


def heartbeat(name: str = "nightly backup") -> Monitor:
    return Monitor.objects.create(name=name, kind="heartbeat", options={"period": 300, "grace": 60})


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def code(self) -> int:
        return int(self.status.split()[0])

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def shape(self) -> tuple[str, list[tuple[str, str]], bytes]:
        return self.status, self.headers, self.body


def call(
    path: str,
    method: str = "GET",
    body: bytes = b"",
    *,
    stream: io.BytesIO | None = None,
    **extra: str,
) -> Answer:
    """Send one request through monitorsite.wsgi.application, as gunicorn does."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "REMOTE_ADDR": "203.0.113.7",
        "HTTP_HOST": "127.0.0.1:8000",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "wsgi.input": stream or io.BytesIO(body),
    }
    if body or stream:
        environ["CONTENT_LENGTH"] = str(len(body or stream.getvalue()))  # type: ignore[union-attr]
        environ["CONTENT_TYPE"] = "text/plain"
    environ.update(extra)
    wsgiref.util.setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.append((status, headers))

    with contextlib.nullcontext() if connection.get_autocommit() else kept_connections():
        response = wsgi.application(environ, start_response)
        try:
            content = b"".join(response)
        finally:
            response.close()  # type: ignore[attr-defined]
    return Answer(started[0][0], started[0][1], content)


@contextlib.contextmanager
def kept_connections() -> Iterator[None]:
    """What django.test.Client does: the test's transaction outlives its requests.

    request_started and request_finished close a connection found inside a
    transaction, which is where every test not marked transaction=True runs.
    """
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


class DjangoCalls:
    """Counts the requests that reach Django's own handler."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        inner = wsgi.application.application

        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            self.count += 1
            return inner(environ, start_response)

        monkeypatch.setattr(wsgi.application, "application", counted)


@pytest.fixture
def django_calls(monkeypatch: pytest.MonkeyPatch) -> DjangoCalls:
    return DjangoCalls(monkeypatch)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def fresh_limiter() -> Iterator[None]:
    caches["default"].clear()
    yield
    caches["default"].clear()


def both_ways(path: str, method: str = "GET", body: bytes = b"", **extra: str) -> list[Answer]:
    """The same request through the fast path and through Django (PING_FAST_PATH off)."""
    fast = call(path, method, body, **extra)
    with override_settings(PING_FAST_PATH=False):
        slow = call(path, method, body, **extra)
    return [fast, slow]


# --- The same answers -------------------------------------------------------------------


def test_it_answers_every_kind_of_ping_as_django_does(
    clock: time_machine.Traveller, django_calls: DjangoCalls
) -> None:
    monitor = heartbeat()
    requests = [
        (f"/ping/{monitor.ping_key}", "GET", b""),
        (f"/ping/{monitor.ping_key}/", "HEAD", b""),
        (f"/ping/{monitor.ping_key}/start", "GET", b""),
        (f"/ping/{monitor.ping_key}/fail/", "POST", b"disk full"),
        (f"/ping/{monitor.ping_key}/3", "POST", b"exit 3"),
        (f"/ping/{UNKNOWN_KEY}", "GET", b""),  # no such monitor
        ("/ping/not-a-uuid/start", "GET", b""),
        (f"/ping/{monitor.ping_key}/256", "GET", b""),
        (f"/ping/{monitor.ping_key}/done", "POST", b"x"),
        (f"/ping/{monitor.ping_key}", "PUT", b"x"),
        (f"/ping/{monitor.ping_key}", "OPTIONS", b""),
        (f"/ping/{monitor.ping_key}", "get", b""),  # Django upper-cases the method
    ]
    for path, method, body in requests:
        fast, slow = both_ways(path, method, body)
        assert fast.shape() == slow.shape(), (method, path)
    assert django_calls.count == len(requests)  # only the PING_FAST_PATH=False halves

    ok, not_found, not_allowed = (
        call(f"/ping/{monitor.ping_key}"),
        call(f"/ping/{UNKNOWN_KEY}"),
        call(f"/ping/{monitor.ping_key}", "DELETE"),
    )
    assert (ok.code, ok.body, not_found.code, not_found.body) == (200, b"OK", 404, b"not found")
    assert (not_allowed.code, not_allowed.header("Allow")) == (405, "GET, POST, HEAD")
    assert dict(ok.headers) == {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": "2",
        "Expires": "Mon, 02 Mar 2026 12:00:00 GMT",
        "Cache-Control": "max-age=0, no-cache, no-store, must-revalidate, private",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    stored = Ping.objects.filter(monitor=monitor).order_by("id")
    assert list(stored.values_list("kind", "exit_code", "method", "body")) == [
        ("success", None, "GET", ""),
        ("success", None, "GET", ""),
        ("success", None, "HEAD", ""),
        ("success", None, "HEAD", ""),
        ("start", None, "GET", ""),
        ("start", None, "GET", ""),
        ("fail", None, "POST", "disk full"),
        ("fail", None, "POST", "disk full"),
        ("exit_code", 3, "POST", "exit 3"),
        ("exit_code", 3, "POST", "exit 3"),
        ("success", None, "GET", ""),
        ("success", None, "GET", ""),
        ("success", None, "GET", ""),
    ]


def test_a_common_ping_is_answered_without_any_middleware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monitor = heartbeat()
    chain: list[str] = []
    handler = fastpath.ping_handler(wsgi.application.passive)
    assert handler is not None
    through_chain = WSGIHandler.__call__

    def counted(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        chain.append(environ["REQUEST_METHOD"])
        return through_chain(self, environ, start_response)

    monkeypatch.setattr(type(handler), "__call__", counted)
    assert call(f"/ping/{monitor.ping_key}/start").code == 200
    assert call(f"/ping/{monitor.ping_key}", "POST", b"done").code == 200
    assert call(f"/ping/{UNKNOWN_KEY}").code == 404
    assert chain == []
    # What the view or the middleware refuses is their own answer.
    assert call(f"/ping/{monitor.ping_key}", "PUT", b"x").code == 405
    assert call(f"/ping/{monitor.ping_key}", HTTP_HOST="evil.example.com").code == 400
    assert chain == ["PUT", "GET"]
    assert Ping.objects.filter(monitor=monitor).count() == 2


def test_it_logs_refused_pings_as_django_does(caplog: pytest.LogCaptureFixture) -> None:
    monitor = heartbeat()
    for method, path in (("GET", f"/ping/{UNKNOWN_KEY}"), ("PUT", f"/ping/{monitor.ping_key}")):
        caplog.clear()
        both_ways(path, method)
        fast, slow = (
            [r for r in caplog.records if r.name == "django.request"][n::2] for n in (0, 1)
        )
        assert [(r.levelname, r.getMessage(), r.status_code) for r in fast] == [
            (r.levelname, r.getMessage(), r.status_code) for r in slow
        ]
        assert len(fast) == 1
    assert caplog.records[-1].getMessage() == f"Method Not Allowed (PUT): /ping/{monitor.ping_key}"


def test_it_adds_hsts_on_https_as_django_does(
    clock: time_machine.Traveller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = heartbeat()
    with override_settings(SECURE_HSTS_SECONDS=3600, SECURE_SSL_REDIRECT=True):
        # Middleware reads these settings when built, as at a server's start.
        monkeypatch.setattr(wsgi.application, "application", WSGIHandler())
        for scheme in ({"HTTP_X_FORWARDED_PROTO": "https"}, {"wsgi.url_scheme": "https"}, {}):
            fast, slow = both_ways(f"/ping/{monitor.ping_key}", **scheme)
            assert fast.shape() == slow.shape()
            assert fast.code == 200  # pings are never redirected to https
        assert fast.header("Strict-Transport-Security") is None  # plain http
        https = call(f"/ping/{monitor.ping_key}", HTTP_X_FORWARDED_PROTO="https")
        assert https.header("Strict-Transport-Security") == "max-age=3600"


def test_a_host_django_refuses_gets_djangos_400(
    django_calls: DjangoCalls, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = heartbeat()
    answer = call(f"/ping/{monitor.ping_key}", HTTP_HOST="evil.example.com")
    assert answer.code == 400
    assert "Invalid HTTP_HOST header: 'evil.example.com'" in caplog.text
    assert not Ping.objects.exists()
    with override_settings(PING_FAST_PATH=False):
        assert call(f"/ping/{monitor.ping_key}", HTTP_HOST="evil.example.com").shape() == (
            answer.shape()
        )
    assert django_calls.count == 1  # the fast path answered the first one itself


def test_other_paths_and_session_cookies_go_to_django(django_calls: DjangoCalls) -> None:
    monitor = heartbeat()
    assert call("/ping/a/b/c").code == 404  # no ping URL: Django's 404 page
    assert call("/health/live").code == 200
    cookie = call(f"/ping/{monitor.ping_key}", HTTP_COOKIE="sessionid=short")
    assert cookie.code == 200
    assert cookie.header("Set-Cookie") is not None  # SessionMiddleware drops the bad cookie
    assert django_calls.count == 3
    assert call(f"/ping/{monitor.ping_key}", HTTP_COOKIE="theme=dark").code == 200
    assert django_calls.count == 3


# --- What is recorded ----------------------------------------------------------------


def test_it_records_who_pinged_and_what_they_said(clock: time_machine.Traveller) -> None:
    monitor = heartbeat()
    answer = call(
        f"/ping/{monitor.ping_key}/fail",
        "POST",
        "backup failed\x00: disk full é".encode(),
        HTTP_USER_AGENT="curl/8.5.0\x00 " + "x" * 500,
        HTTP_X_FORWARDED_FOR="198.51.100.1",
        REMOTE_ADDR="2001:db8::1%eth0",
    )
    assert answer.code == 200
    stored = Ping.objects.get(monitor=monitor)
    assert (stored.kind, stored.method, stored.received_at) == ("fail", "POST", T0)
    assert stored.body == "backup failed: disk full é"
    assert stored.remote_addr == "2001:db8::1"  # the peer, not what a header claims
    assert stored.user_agent.startswith("curl/8.5.0 ") and len(stored.user_agent) == 200


def test_it_reads_only_the_first_10_kb_of_a_big_body() -> None:
    monitor = heartbeat()
    upload = io.BytesIO(b"y" * 5_000_000)
    assert call(f"/ping/{monitor.ping_key}", "POST", stream=upload).code == 200
    assert upload.tell() == 10 * 1024  # the rest is never read into memory
    cut = "é".encode() * 6000  # a two-byte character cut in half by the limit is dropped
    assert call(f"/ping/{monitor.ping_key}", "POST", cut).code == 200
    bodies = list(Ping.objects.order_by("id").values_list("body", flat=True))
    assert bodies == ["y" * 10240, "é" * 5120]


def test_it_is_one_query_per_ping(django_assert_num_queries: Any) -> None:
    monitor = heartbeat()
    with django_assert_num_queries(1):
        assert call(f"/ping/{monitor.ping_key}/1", "POST", b"failed").code == 200
    with django_assert_num_queries(0):
        assert call("/ping/not-a-uuid").code == 404


def test_it_limits_pings_per_key(clock: time_machine.Traveller, settings: Any) -> None:
    settings.PING_RATE_LIMIT = 3
    monitor = heartbeat()
    assert [call(f"/ping/{monitor.ping_key}").code for _ in range(3)] == [200] * 3
    fast, slow = both_ways(f"/ping/{monitor.ping_key}")
    assert fast.shape() == slow.shape()
    assert fast.code == 429 and fast.body == b"rate limit exceeded"
    assert fast.header("Retry-After") == "60"
    assert Ping.objects.count() == 3
    clock.shift(60)
    assert call(f"/ping/{monitor.ping_key}").code == 200


def test_the_limiter_survives_redis_forgetting_its_script(settings: Any) -> None:
    settings.PING_RATE_LIMIT = 2
    monitor = heartbeat()
    assert call(f"/ping/{monitor.ping_key}").code == 200
    client = caches["default"]._cache.get_client(write=True)
    client.script_flush()  # what a Redis restart does to loaded scripts
    assert call(f"/ping/{monitor.ping_key}").code == 200
    assert call(f"/ping/{monitor.ping_key}").code == 429  # the count went on


@pytest.mark.django_db(transaction=True)
def test_a_ping_is_stored_when_the_database_dropped_the_kept_connection() -> None:
    monitor = heartbeat()
    assert call(f"/ping/{monitor.ping_key}").code == 200
    drop_kept_database_connection()
    assert call(f"/ping/{monitor.ping_key}/fail").code == 200
    assert list(Ping.objects.order_by("id").values_list("kind", flat=True)) == ["success", "fail"]


@pytest.mark.django_db(transaction=True)
def test_it_closes_database_connections_as_django_does() -> None:
    monitor = heartbeat()
    db = connections["default"]
    for fast in (True, False):
        with override_settings(PING_FAST_PATH=fast):
            db.close()
            db.settings_dict["CONN_MAX_AGE"] = 0  # a connection per request
            try:
                assert call(f"/ping/{monitor.ping_key}").code == 200
                assert db.connection is None  # closed by request_finished
                db.settings_dict["CONN_MAX_AGE"] = 60
                assert call(f"/ping/{monitor.ping_key}").code == 200
                kept = db.connection
                assert call(f"/ping/{monitor.ping_key}").code == 200
                assert db.connection is kept  # reused while younger than CONN_MAX_AGE
                db.close_at = time.monotonic() - 1  # too old: request_started replaces it
                assert call(f"/ping/{monitor.ping_key}").code == 200
                assert db.connection is not None and db.connection is not kept
            finally:
                db.settings_dict["CONN_MAX_AGE"] = 60
    assert Ping.objects.count() == 8


def test_a_database_outage_is_djangos_500_and_reaches_the_error_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from django.db import OperationalError

    from checks import pings

    def down(*args: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(pings, "insert_ping", down)
    monitor = heartbeat()
    fast, slow = both_ways(f"/ping/{monitor.ping_key}")
    assert fast.shape() == slow.shape()
    assert fast.code == 500
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "django.request"]
    assert len(errors) == 2 and all(r.exc_info for r in errors)


# --- Under gunicorn ------------------------------------------------------------------------


@dataclass
class Gunicorn:
    url: str
    log: Path

    def ping_access_lines(self, count: int) -> list[str]:
        """The access-log lines of pings, once `count` are written (each after its answer)."""
        deadline = time.monotonic() + 10
        while True:
            lines = re.findall(r'^\S+ "[A-Z]+ /ping/.*$', self.log.read_text(), re.M)
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@contextlib.contextmanager
def running_gunicorn(tmp_path: Path, env: dict[str, str]) -> Iterator[Gunicorn]:
    """gunicorn as `make run` starts it, in the environment `env` plus its bind and secret."""
    port = free_port()
    env = {
        "WATCHPOST_DATA_DIR": str(tmp_path),
        "WATCHPOST_BIND": f"127.0.0.1:{port}",
        "SECRET_KEY": "gunicorn-ping-test-not-a-secret-0123456789",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "2",
        **env,
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(gunicorn), "monitorsite.wsgi", "--config", "monitorsite/gunicorn.conf.py"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/health/live", timeout=2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    try:
        yield Gunicorn(base, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture
def gunicorn(transactional_db: None, tmp_path: Path) -> Iterator[Gunicorn]:
    """gunicorn on this test's database and Redis."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.CACHES["default"]["LOCATION"],
        "PING_RATE_LIMIT": "1000",
    }
    with running_gunicorn(tmp_path, env) as server:
        yield server


def request(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, Any, bytes]:
    headers = {"User-Agent": "backup-job/1.0", "Content-Type": "text/plain"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.mark.slow
def test_under_gunicorn_a_job_sees_its_pings_recorded(gunicorn: Gunicorn) -> None:
    base = gunicorn.url
    monitor = heartbeat()
    key = monitor.ping_key
    status, headers, body = request(f"{base}/ping/{key}")
    assert (status, body, headers["Content-Length"]) == (200, b"OK", "2")
    assert headers["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert request(f"{base}/ping/{key}/fail", "POST", b"z" * 50_000)[0] == 200
    assert request(f"{base}/ping/{key}/2", "HEAD")[0] == 200
    assert request(f"{base}/ping/{key}", "PUT", b"x")[0] == 405
    assert request(f"{base}/ping/{UNKNOWN_KEY}")[0] == 404
    assert request(f"{base}/ping/a/b/c")[0] == 404
    stored = Ping.objects.filter(monitor=monitor).order_by("id")
    assert list(stored.values_list("kind", "exit_code", "method", "remote_addr", "user_agent")) == [
        ("success", None, "GET", "127.0.0.1", "backup-job/1.0"),
        ("fail", None, "POST", "127.0.0.1", "backup-job/1.0"),
        ("exit_code", 2, "HEAD", "127.0.0.1", "backup-job/1.0"),
    ]
    assert [len(body) for body in stored.values_list("body", flat=True)] == [0, 10240, 0]


@pytest.mark.slow
def test_under_gunicorn_every_ping_has_its_access_log_line(gunicorn: Gunicorn) -> None:
    monitor = heartbeat()
    assert request(f"{gunicorn.url}/ping/{monitor.ping_key}?run=1")[0] == 200
    assert request(f"{gunicorn.url}/ping/{UNKNOWN_KEY}/fail", "POST", b"x")[0] == 404
    lines = gunicorn.ping_access_lines(2)
    assert [re.sub(r" [0-9]+ms$", " Nms", line) for line in lines] == [
        f'127.0.0.1 "GET /ping/{monitor.ping_key}?run=1 HTTP/1.1" 200 2 Nms',
        f'127.0.0.1 "POST /ping/{UNKNOWN_KEY}/fail HTTP/1.1" 404 9 Nms',
    ]


EMBEDDED_SETUP = """
from checks.models import Monitor
monitor = Monitor.objects.create(name="cron", kind="heartbeat", options={"period": 60, "grace": 60})
print(monitor.ping_key)
"""


@pytest.mark.slow
def test_under_gunicorn_on_the_embedded_default_pings_are_recorded_and_limited(
    tmp_path: Path,
) -> None:
    # SQLite and the file cache: nothing of this test's PostgreSQL or Redis.
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    env |= {"WATCHPOST_DATA_DIR": str(tmp_path), "PING_RATE_LIMIT": "2"}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=REPO, env=env, check=True, timeout=300)
    setup = [*manage, "shell", "-c", EMBEDDED_SETUP]
    made = subprocess.run(setup, cwd=REPO, env=env, check=True, capture_output=True, text=True)
    key = made.stdout.split()[-1]  # after what the shell says it imported
    with running_gunicorn(tmp_path, env) as server:
        answers = [
            request(f"{server.url}/ping/{key}/start")[0],
            request(f"{server.url}/ping/{key}", "POST", b"done\x00 in 3 s")[0],
            request(f"{server.url}/ping/{key}")[0],
        ]
    assert answers == [200, 200, 429]
    with sqlite3.connect(tmp_path / "watchpost.sqlite3") as db:
        rows = db.execute("SELECT kind, method, body, remote_addr FROM checks_ping ORDER BY id")
        assert rows.fetchall() == [
            ("start", "GET", "", "127.0.0.1"),
            ("success", "POST", "done in 3 s", "127.0.0.1"),
        ]
