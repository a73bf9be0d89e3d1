"""The redis probe against real redis-servers on loopback, judged as a user reads it."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import trustme
from django.core.exceptions import ValidationError
from django.test import override_settings

from checks.models import Monitor
from checks.services import run_now
from checks.tasks import probe_batch
from tests.conftest import RedisServer, free_port
from tests.probing import check, everything_said, saved_monitor, shown_pct
from tests.targets import closed_port, silent_tcp_server

pytestmark = pytest.mark.django_db

MACHINE_REDIS = "redis://127.0.0.1:6379/0"
PASSWORD = "r3dis:p@ss/word"
ENCODED = "r3dis%3Ap%40ss%2Fword"
MB = 1024 * 1024
T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def redis_monitor(
    target: str, timeout: float = 5, interval: int = 60, **options: object
) -> Monitor:
    return saved_monitor(
        "redis", target, "cache", options=options, timeout=timeout, interval=interval
    )


def admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port)


def fill(server: RedisServer, share: float) -> float:
    """Store about 4 MB, then set maxmemory so that is `share` of it; the share in percent."""
    client = admin(server)
    # Built on the server, so no big request lingers in a client's buffer.
    grow = "redis.call('SET', KEYS[1], string.rep('x', tonumber(ARGV[1])))"
    for number in range(4):
        client.eval(grow, 1, f"blob:{number}", MB)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", int(used / share))
    return used / int(client.config_get("maxmemory")["maxmemory"]) * 100


def test_it_pings_and_reads_memory_and_clients_of_an_unlimited_redis() -> None:
    run, verdict = run_now(redis_monitor(MACHINE_REDIS))
    assert verdict.outcome == "ok"
    assert re.fullmatch(
        r"PING in \d+ ms, memory [\d.]+ (B|KB|MB|GB) \(no maxmemory limit\), \d+ clients?",
        verdict.reason,
    )
    assert "memory_pct" not in run.observation.values
    assert run.observation.values["clients"] >= 1
    assert run.observation.memory == {"maxmemory": 0}


def test_it_goes_yellow_then_red_as_memory_fills(redis_server: RedisServer) -> None:
    share = fill(redis_server, 0.5)
    monitor = redis_monitor(redis_server.url, memory_warning_pct=40, memory_critical_pct=90)
    run, verdict = run_now(monitor)
    pct = run.observation.values["memory_pct"]
    assert pct == pytest.approx(share, abs=2)
    assert (verdict.outcome, verdict.reason) == ("warning", f"memory used {shown_pct(pct)} ≥ 40%")
    assert re.fullmatch(
        rf"PING in \d+ ms, memory [\d.]+ MB of [\d.]+ MB \({pct:g}%\), \d+ clients",
        run.observation.summary,
    )
    monitor.options = {"memory_warning_pct": 20, "memory_critical_pct": 30}
    monitor.save()
    run, verdict = run_now(monitor)
    pct = run.observation.values["memory_pct"]
    assert (verdict.outcome, verdict.reason) == ("critical", f"memory used {shown_pct(pct)} ≥ 30%")


def test_it_applies_the_default_memory_zones_once_it_has_seen_a_limit(
    redis_server: RedisServer,
) -> None:
    fill(redis_server, 0.875)
    monitor = redis_monitor(redis_server.url, interval=30)
    probe_batch("default", [[monitor.pk, T0.isoformat()]])
    monitor.refresh_from_db()
    # The first run learns that this server has a limit; the default 80 / 95 % then apply.
    assert re.fullmatch(
        r"PING in \d+ ms, memory .* \(8\d(\.\d)?%\), \d+ clients", monitor.last_reason
    )
    probe_batch("default", [[monitor.pk, (T0 + timedelta(seconds=30)).isoformat()]])
    monitor.refresh_from_db()
    assert re.fullmatch(r"memory used 8\d% ≥ 80%", monitor.last_reason)
    # With the limit lifted, the next run still judges memory (it was known to
    # be limited) and finds no share; from then on the default zones are off.
    admin(redis_server).config_set("maxmemory", 0)
    probe_batch("default", [[monitor.pk, (T0 + timedelta(seconds=60)).isoformat()]])
    monitor.refresh_from_db()
    assert monitor.last_reason == "memory used is missing"
    probe_batch("default", [[monitor.pk, (T0 + timedelta(seconds=90)).isoformat()]])
    monitor.refresh_from_db()
    assert re.search(r"\(no maxmemory limit\), \d+ clients$", monitor.last_reason)
    assert monitor.status == "up"


def test_it_reads_an_asked_for_memory_rule_as_missing_without_a_limit(
    redis_server: RedisServer,
) -> None:
    run, verdict = run_now(redis_monitor(redis_server.url, memory_critical_pct=90))
    assert (verdict.outcome, verdict.reason) == ("critical", "memory used is missing")
    assert "(no maxmemory limit)" in run.observation.summary


def test_it_counts_connected_clients(redis_server: RedisServer) -> None:
    watcher = admin(redis_server)
    already = int(watcher.info("clients")["connected_clients"])
    held = [admin(redis_server) for _ in range(4)]
    for client in held:
        client.ping()
    seen = already + len(held) + 1  # and the probe's own connection
    monitor = redis_monitor(redis_server.url, clients_warning=seen, clients_critical=seen + 5)
    run, verdict = run_now(monitor)
    assert (verdict.outcome, verdict.reason) == ("warning", f"connected clients {seen} ≥ {seen}")
    assert run.observation.summary.endswith(f", {seen} clients")
    for client in held[:2]:
        client.close()
    assert check(monitor)[0] == "ok"


def test_it_logs_in_with_a_password_it_never_shows(redis_server: RedisServer) -> None:
    admin(redis_server).config_set("requirepass", PASSWORD)
    url = f"redis://:{ENCODED}@127.0.0.1:{redis_server.port}/0"
    run, verdict = run_now(redis_monitor(url))
    assert verdict.outcome == "ok"
    assert PASSWORD not in everything_said(run, verdict.reason)
    wrong = f"redis://:not-{ENCODED}@127.0.0.1:{redis_server.port}/0"
    run, verdict = run_now(redis_monitor(wrong))
    assert (verdict.outcome, verdict.reason) == (
        "error",
        f"cannot log in to 127.0.0.1:{redis_server.port}: "
        "invalid username-password pair or user is disabled",
    )
    assert PASSWORD not in everything_said(run, verdict.reason)
    assert check(redis_monitor(redis_server.url)) == (
        "error",
        f"127.0.0.1:{redis_server.port} asks for a password and the URL has none",
    )


def test_it_logs_in_as_an_acl_user_by_name(redis_server: RedisServer) -> None:
    admin(redis_server).acl_setuser(
        "monitor", enabled=True, passwords=[f"+{PASSWORD}"], commands=["+ping", "+info"]
    )
    url = f"redis://monitor:{ENCODED}@localhost:{redis_server.port}/0"
    run, verdict = run_now(redis_monitor(url))
    assert verdict.outcome == "ok"
    assert run.observation.info["address"] == "127.0.0.1"
    admin(redis_server).acl_setuser("monitor", enabled=True, commands=["-info"])
    outcome, reason = check(redis_monitor(url))
    assert outcome == "error"
    assert reason.startswith(f"the user may not run PING and INFO on localhost:{redis_server.port}")
    assert PASSWORD not in reason


def test_it_names_a_database_that_does_not_exist() -> None:
    assert check(redis_monitor("redis://127.0.0.1:6379/999")) == (
        "error",
        "cannot select the database on 127.0.0.1:6379: DB index is out of range",
    )


def test_it_reports_a_refused_connection_and_a_stopped_server(redis_server: RedisServer) -> None:
    port = closed_port()
    assert check(redis_monitor(f"redis://127.0.0.1:{port}/0")) == (
        "error",
        f"connection refused by 127.0.0.1:{port}",
    )
    monitor = redis_monitor(redis_server.url)
    assert check(monitor)[0] == "ok"
    redis_server.stop()
    assert check(monitor) == ("error", f"connection refused by 127.0.0.1:{redis_server.port}")


def test_it_gives_up_on_a_server_that_never_answers() -> None:
    with silent_tcp_server() as port:
        target = f"redis://:{ENCODED}@127.0.0.1:{port}/0"
        assert check(redis_monitor(target, timeout=1)) == ("error", "timed out after 1 s")


def test_it_refuses_cloud_metadata_and_denied_addresses() -> None:
    assert check(redis_monitor("redis://169.254.169.254:6379/0")) == (
        "error",
        "connecting to 169.254.169.254 is not allowed (PROBE_DENY_NETWORKS); "
        "add it to PROBE_ALLOW_NETWORKS to probe it",
    )
    with override_settings(PROBE_DENY_NETWORKS=["127.0.0.0/8", "::1/128"]):
        outcome, reason = check(redis_monitor("redis://localhost:6379/0"))
    assert outcome == "error"
    assert reason.startswith("connecting to localhost (127.0.0.1")


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS, its certificate for `localhost`; (port, CA file)."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(files["ca"])
    cert.cert_chain_pems[0].write_to_path(files["cert"])
    cert.private_key_pem.write_to_path(files["key"])
    port = free_port()
    binary = shutil.which("redis-server")
    assert binary is not None
    args = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    args += ["--tls-cert-file", str(files["cert"]), "--tls-key-file", str(files["key"])]
    args += ["--tls-ca-cert-file", str(files["ca"]), "--tls-auth-clients", "no"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    with ExitStack() as stack:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        stack.callback(process.wait, timeout=10)
        stack.callback(process.terminate)
        client = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(files["ca"]))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield port, files["ca"]


def test_it_verifies_tls_against_the_host_name_while_connecting_to_the_checked_address(
    tls_redis: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca_file = tls_redis
    monitor = redis_monitor(f"rediss://localhost:{port}/0")
    outcome, reason = check(monitor)
    assert outcome == "error"
    assert reason.startswith("TLS certificate rejected for localhost: ")
    assert check(redis_monitor(f"rediss://localhost:{port}/0", verify_tls=False))[0] == "ok"
    # Trusting the CA, the certificate (for "localhost", not "127.0.0.1") is accepted.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    run, verdict = run_now(monitor)
    assert verdict.outcome == "ok"
    assert run.observation.info["address"] == "127.0.0.1"
    outcome, reason = check(redis_monitor(f"rediss://127.0.0.1:{port}/0"))
    assert (outcome, reason.startswith("TLS certificate rejected for 127.0.0.1: ")) == (
        "error",
        True,
    )


def test_it_names_each_bad_target_and_option() -> None:
    cases = {
        "http://cache:6379": "must be a redis:// or rediss:// URL with a host, "
        "e.g. redis://:secret@cache.internal:6379/0",
        f"redis://:{ENCODED}@cache:70000/0": "the port must be a number from 1 to 65535",
        "redis://cache:6379/zero": "the database after the / must be a number, "
        "e.g. redis://:secret@cache.internal:6379/0",
        "redis://cache:6379/0?ssl_cert_reqs=none": "takes no ?parameters; "
        "set TLS checks with the verify_tls option",
    }
    for target, message in cases.items():
        with pytest.raises(ValidationError) as caught:
            Monitor(name="cache", kind="redis", target=target).full_clean()
        assert caught.value.message_dict["target"] == [message], target
        assert PASSWORD not in str(caught.value) and ENCODED not in str(caught.value)
    monitor = Monitor(
        name="cache",
        kind="redis",
        target=MACHINE_REDIS,
        options={"memory_warning_pct": 120, "clients_warning": 50, "clients_critical": 10},
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    assert caught.value.message_dict["options"] == [
        "memory_warning_pct: must be between 0 and 100, got 120",
        "clients_warning: must be below clients_critical",
    ]
