"""The tcp probe against real listeners on loopback, judged as a user reads it."""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from checks.models import Monitor
from checks.probes import tcp
from checks.services import run_now
from tests.probing import check, saved_monitor
from tests.targets import closed_port, silent_tcp_server

pytestmark = pytest.mark.django_db


def tcp_monitor(target: str, timeout: float = 5, **options: object) -> Monitor:
    return saved_monitor("tcp", target, "db", options=options, timeout=timeout)


@contextmanager
def ipv6_listener() -> Iterator[int]:
    with socket.socket(socket.AF_INET6) as listener:
        listener.bind(("::1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@contextmanager
def full_backlog() -> Iterator[int]:
    """A listener whose queue is full, so a new connection is never completed."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        yield port


def test_it_connects_and_reports_how_fast() -> None:
    with silent_tcp_server() as port:
        run, verdict = run_now(tcp_monitor(f"127.0.0.1:{port}"))
    assert verdict.outcome == "ok"
    assert re.fullmatch(rf"connected to 127\.0\.0\.1:{port} in \d+ ms", verdict.reason)
    assert run.observation.latency_ms is not None


def test_it_connects_to_an_ipv6_address_in_brackets() -> None:
    with ipv6_listener() as port:
        outcome, reason = check(tcp_monitor(f"[::1]:{port}"))
    assert outcome == "ok"
    assert reason.startswith(f"connected to [::1]:{port} in ")


def test_it_resolves_a_name_and_checks_the_address_it_connects_to() -> None:
    with silent_tcp_server() as port:
        run, verdict = run_now(tcp_monitor(f"localhost:{port}"))
        assert verdict.outcome == "ok"
        assert verdict.reason.startswith(f"connected to localhost:{port} in ")
        assert run.observation.info == {"address": "127.0.0.1"}
        with override_settings(PROBE_DENY_NETWORKS=["127.0.0.0/8", "::1/128"]):
            outcome, reason = check(tcp_monitor(f"localhost:{port}"))
    assert outcome == "error"
    assert reason.startswith("connecting to localhost (127.0.0.1) is not allowed")


def test_it_refuses_cloud_metadata_addresses() -> None:
    assert check(tcp_monitor("169.254.169.254:80")) == (
        "error",
        "connecting to 169.254.169.254 is not allowed (PROBE_DENY_NETWORKS); "
        "add it to PROBE_ALLOW_NETWORKS to probe it",
    )


def test_it_reports_a_refused_connection() -> None:
    port = closed_port()
    assert check(tcp_monitor(f"127.0.0.1:{port}")) == (
        "error",
        f"connection refused by 127.0.0.1:{port}",
    )


def test_it_gives_up_on_a_connection_that_is_never_accepted() -> None:
    with full_backlog() as port:
        assert check(tcp_monitor(f"127.0.0.1:{port}", timeout=1)) == (
            "error",
            "timed out after 1 s",
        )


def test_it_reports_a_name_that_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def no_such_name(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "db.nowhere.test":  # answered here: the test sends no DNS query
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    assert check(tcp_monitor("db.nowhere.test:5432")) == (
        "error",
        "DNS lookup failed for db.nowhere.test (Name or service not known)",
    )


def test_it_reports_an_unreachable_network(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_route(ip: str, port: int) -> str:
        raise OSError(errno.EHOSTUNREACH, "No route to host")

    monkeypatch.setattr(tcp, "open_and_close", no_route)
    assert check(tcp_monitor("127.0.0.1:5432")) == (
        "error",
        "127.0.0.1:5432 is unreachable (no route to host)",
    )


def test_it_goes_yellow_then_red_on_a_slow_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tcp.open_and_close

    async def slow(ip: str, port: int) -> str:
        await asyncio.sleep(0.2)
        return await real(ip, port)

    monkeypatch.setattr(tcp, "open_and_close", slow)
    with silent_tcp_server() as port:
        target = f"127.0.0.1:{port}"
        outcome, reason = check(tcp_monitor(target, latency_warning_ms=100))
        assert outcome == "warning"
        assert re.fullmatch(r"latency \d+ ms ≥ 100 ms", reason)
        outcome, reason = check(tcp_monitor(target, latency_warning_ms=50, latency_critical_ms=150))
        assert outcome == "critical"
        assert re.fullmatch(r"latency \d+ ms ≥ 150 ms", reason)


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("db.internal", "the port is missing"),
        ("::1:5432", "write an IPv6 address in brackets, e.g. [::1]:5432"),
        ("[db.internal]:5432", "an address in brackets must be IPv6, e.g. [::1]:5432"),
        ("db.internal:99999", "the port must be a number from 1 to 65535, got '99999'"),
        ("db internal:5432", "'db internal' is not a host name or IP address"),
        ("", "'' is not a host name or IP address"),
    ],
)
def test_it_names_what_is_wrong_with_the_target(target: str, problem: str) -> None:
    monitor = Monitor(name="bad", kind="tcp", target=target)
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    assert caught.value.message_dict["target"] == [
        "must be host:port, e.g. db.internal:5432 (an IPv6 address as [::1]:5432): " + problem
    ]


def test_it_names_each_bad_option() -> None:
    monitor = Monitor(
        name="bad",
        kind="tcp",
        target="db.internal:5432",
        options={"latency_warning_ms": 500, "latency_critical_ms": 200, "send": "PING"},
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    assert caught.value.message_dict["options"] == [
        "send: unknown option (known: latency_critical_ms, latency_warning_ms)",
        "latency_warning_ms: must be below latency_critical_ms",
    ]
