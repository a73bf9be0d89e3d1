"""The tls probe against real TLS servers on loopback with certificates made by trustme."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError

from checks.models import Monitor
from checks.services import run_now
from tests.probing import saved_monitor
from tests.targets import HttpTarget, closed_port, silent_tcp_server
from tests.tls_certs import TestCA, TlsServer

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def stranger() -> TestCA:
    """A CA no monitor trusts."""
    return TestCA("Untrusted CA")


def tls_monitor(target: str, timeout: float = 5, **options: object) -> Monitor:
    return saved_monitor("tls", target, "cert", options=options, timeout=timeout)


def check_cert(ca: TestCA, key_and_chain: bytes, **options: object) -> tuple[str, str]:
    """Serve the certificate and probe it as api.example, trusting the test CA."""
    options = {"server_name": "api.example", "ca_cert": ca.pem, **options}
    with TlsServer(key_and_chain) as server:
        _run, verdict = run_now(tls_monitor(f"127.0.0.1:{server.port}", **options))
    return verdict.outcome, verdict.reason


def test_it_reports_days_left_and_the_issuer(ca: TestCA) -> None:
    with TlsServer(ca.issue("api.example", days=60)) as server:
        monitor = tls_monitor(f"127.0.0.1:{server.port}", server_name="api.example", ca_cert=ca.pem)
        run, verdict = run_now(monitor)
    assert (verdict.outcome, verdict.reason) == (
        "ok",
        "certificate valid for 60 days, issued by Watchpost Test CA",
    )
    observation = run.observation
    assert observation.values["cert_days"] == 60
    assert observation.info["issuer"] == "Watchpost Test CA"
    assert observation.info["names"] == ["api.example"]
    assert observation.latency_ms is not None


def test_it_is_critical_a_few_days_before_expiry(ca: TestCA) -> None:
    assert check_cert(ca, ca.issue("api.example", days=5)) == (
        "critical",
        "certificate expires in 5 days (critical < 7)",
    )


def test_it_warns_earlier(ca: TestCA) -> None:
    assert check_cert(ca, ca.issue("api.example", days=10)) == (
        "warning",
        "certificate expires in 10 days (warning < 14)",
    )
    assert check_cert(ca, ca.issue("api.example", days=10), warning_days=30, critical_days=14) == (
        "critical",
        "certificate expires in 10 days (critical < 14)",
    )
    assert check_cert(ca, ca.issue("api.example", days=10), warning_days=7, critical_days=3) == (
        "ok",
        "certificate valid for 10 days, issued by Watchpost Test CA",
    )


def test_it_says_how_long_ago_a_certificate_expired(ca: TestCA) -> None:
    assert check_cert(ca, ca.issue("api.example", days=-3)) == (
        "critical",
        "certificate expired 3 days ago (critical < 7)",
    )


def test_it_names_the_host_a_certificate_is_for(ca: TestCA) -> None:
    with TlsServer(ca.issue("other.example", days=60)) as server:
        run, verdict = run_now(
            tls_monitor(f"127.0.0.1:{server.port}", server_name="api.example", ca_cert=ca.pem)
        )
    assert verdict.outcome == "critical"
    assert verdict.reason == "certificate is for other.example, not api.example"
    # What the certificate says is still reported.
    assert run.observation.values["cert_days"] == 60
    assert run.observation.summary == "certificate valid for 60 days, issued by Watchpost Test CA"


def test_it_does_not_trust_a_certificate_from_an_unknown_ca(ca: TestCA, stranger: TestCA) -> None:
    with TlsServer(stranger.issue("api.example", days=60, with_root=True)) as server:
        run, verdict = run_now(
            tls_monitor(f"127.0.0.1:{server.port}", server_name="api.example", ca_cert=ca.pem)
        )
    assert (verdict.outcome, verdict.reason) == (
        "critical",
        "certificate not trusted: self-signed certificate in chain",
    )
    assert run.observation.info["issuer"] == "Untrusted CA"
    assert run.observation.values["cert_days"] == 60
    assert check_cert(ca, stranger.issue("api.example")) == (
        "critical",
        "certificate not trusted: unknown issuer (an intermediate certificate is missing, "
        "or the CA is private: set ca_cert)",
    )


def test_it_trusts_a_private_ca_only_when_given(ca: TestCA) -> None:
    with TlsServer(ca.issue("localhost", days=60)) as server:
        # The host is the name checked when server_name is not set.
        trusted = tls_monitor(f"localhost:{server.port}", ca_cert=ca.pem)
        assert run_now(trusted)[1].outcome == "ok"
        untrusted = tls_monitor(f"localhost:{server.port}")
        assert run_now(untrusted)[1].reason.startswith("certificate not trusted: unknown issuer")


def test_it_reports_a_port_that_does_not_speak_tls(target: HttpTarget) -> None:
    _run, verdict = run_now(tls_monitor(f"127.0.0.1:{target.port}"))
    assert (verdict.outcome, verdict.reason) == (
        "error",
        f"TLS handshake with 127.0.0.1:{target.port} failed: "
        "the server does not speak TLS on this port",
    )


def test_it_reports_a_refused_connection() -> None:
    port = closed_port()
    assert run_now(tls_monitor(f"127.0.0.1:{port}"))[1].reason == (
        f"connection refused by 127.0.0.1:{port}"
    )


def test_it_gives_up_on_a_server_that_never_answers_the_handshake() -> None:
    with silent_tcp_server() as port:
        _run, verdict = run_now(tls_monitor(f"127.0.0.1:{port}", timeout=1))
    assert (verdict.outcome, verdict.reason) == ("error", "timed out after 1 s")


def test_it_refuses_cloud_metadata_addresses() -> None:
    _run, verdict = run_now(tls_monitor("169.254.169.254"))
    assert (verdict.outcome, verdict.reason) == (
        "error",
        "connecting to 169.254.169.254 is not allowed (PROBE_DENY_NETWORKS); "
        "add it to PROBE_ALLOW_NETWORKS to probe it",
    )


def test_it_names_each_bad_option() -> None:
    monitor = Monitor(
        name="bad",
        kind="tls",
        target="https://api.example.com/",
        options={
            "server_name": "api example",
            "ca_cert": "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n",
            "warning_days": 3,
            "critical_days": 7,
            "verify": False,
        },
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    errors = caught.value.message_dict
    assert len(errors["target"]) == 1
    assert re.match(
        r"must be host or host:port, e\.g\. api\.example\.com:443 \(IPv6 as \[::1\]:443\): ",
        errors["target"][0],
    )
    assert errors["options"] == [
        "verify: unknown option (known: ca_cert, critical_days, server_name, warning_days)",
        "server_name: must be a host name, got 'api example'",
        "ca_cert: must be the CA's certificate in PEM (-----BEGIN CERTIFICATE-----...)",
        "warning_days: must not be below critical_days (7)",
    ]


def test_it_accepts_a_bare_host_on_port_443() -> None:
    monitor = Monitor(name="ok", kind="tls", target="api.example.com", options={})
    monitor.full_clean()
    monitor.target = "[2001:db8::1]"
    monitor.full_clean()
