"""The dns probe against a real DNS server on loopback (never the system's resolver)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from django.core.exceptions import ValidationError

from checks.models import Monitor
from checks.services import run_now
from tests.dns_server import DnsServer
from tests.probing import check, saved_monitor

pytestmark = pytest.mark.django_db

ZONE = {
    "api.example.com": {"A": ["192.0.2.10", "192.0.2.11"], "AAAA": ["2001:db8::10"]},
    "www.example.com": {"CNAME": ["api.example.com"]},
    "example.com": {
        "MX": ["10 mail.example.com", "20 backup-mail.example.com"],
        "TXT": ["v=spf1 include:_spf.example.com ~all", "google-site-verification=abc"],
    },
    "mail.example.com": {"TXT": ["mail only"]},
}


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(ZONE, rcodes={"broken.example.com": "SERVFAIL"}) as dns_server:
        yield dns_server


def dns_monitor(name: str, resolver: str, timeout: float = 5, **options: object) -> Monitor:
    # Every monitor names the loopback resolver: the tests never query the system's.
    return saved_monitor(
        "dns", name, "dns", options={"resolver": resolver, **options}, timeout=timeout
    )


def test_it_resolves_a_name_at_the_given_resolver(server: DnsServer) -> None:
    run, verdict = run_now(dns_monitor("api.example.com", server.address))
    assert verdict.outcome == "ok"
    assert re.fullmatch(
        r"api\.example\.com A: 192\.0\.2\.10, 192\.0\.2\.11 in \d+ ms", verdict.reason
    )
    assert server.queries == [("api.example.com", "A")]
    assert run.observation.info["resolver"] == server.address


def test_it_is_ok_when_every_expected_answer_is_there(server: DnsServer) -> None:
    monitor = dns_monitor("api.example.com", server.address, expected=["192.0.2.11"])
    assert check(monitor)[0] == "ok"
    monitor = dns_monitor(
        "api.example.com", server.address, record_type="AAAA", expected=["2001:DB8:0::10"]
    )
    assert check(monitor)[0] == "ok"


def test_it_names_each_missing_answer(server: DnsServer) -> None:
    monitor = dns_monitor(
        "api.example.com", server.address, expected=["192.0.2.10", "192.0.2.99", "192.0.2.98"]
    )
    assert check(monitor) == (
        "critical",
        'DNS answers does not contain "192.0.2.99"; DNS answers does not contain "192.0.2.98"',
    )


def test_it_follows_a_cname_to_the_addresses(server: DnsServer) -> None:
    run, verdict = run_now(dns_monitor("www.example.com", server.address, expected=["192.0.2.10"]))
    assert verdict.outcome == "ok"
    assert run.observation.info["canonical_name"] == "api.example.com"
    monitor = dns_monitor(
        "www.example.com", server.address, record_type="CNAME", expected=["API.example.com."]
    )
    assert check(monitor)[0] == "ok"


def test_it_reads_mx_and_txt_records(server: DnsServer) -> None:
    outcome, reason = check(
        dns_monitor(
            "example.com", server.address, record_type="MX", expected=["10 mail.example.com"]
        )
    )
    assert outcome == "ok"
    assert reason.startswith("example.com MX: 10 mail.example.com, 20 backup-mail.example.com in ")
    monitor = dns_monitor(
        "example.com",
        server.address,
        record_type="TXT",
        expected=["v=spf1 include:_spf.example.com ~all"],
    )
    assert check(monitor)[0] == "ok"
    monitor = dns_monitor("example.com", server.address, record_type="TXT", expected=["v=spf2"])
    assert check(monitor) == ("critical", 'DNS answers does not contain "v=spf2"')


def test_it_is_critical_for_a_name_that_does_not_exist(server: DnsServer) -> None:
    run, verdict = run_now(dns_monitor("gone.example.com", server.address))
    assert verdict.outcome == "critical"
    assert verdict.reason == "rcode NXDOMAIN, expected NOERROR"
    assert run.observation.summary.startswith("gone.example.com A: NXDOMAIN in ")


def test_it_can_expect_a_name_not_to_exist(server: DnsServer) -> None:
    assert check(dns_monitor("gone.example.com", server.address, rcode="NXDOMAIN"))[0] == "ok"
    assert check(dns_monitor("api.example.com", server.address, rcode="NXDOMAIN")) == (
        "critical",
        "rcode NOERROR, expected NXDOMAIN",
    )


def test_it_reports_a_failing_resolver(server: DnsServer) -> None:
    assert check(dns_monitor("broken.example.com", server.address)) == (
        "critical",
        "rcode SERVFAIL, expected NOERROR",
    )


def test_it_is_critical_for_a_name_without_records_of_the_type(server: DnsServer) -> None:
    outcome, reason = check(dns_monitor("mail.example.com", server.address))
    assert (outcome, reason) == ("critical", "no A records for mail.example.com")


def test_it_asks_a_resolver_on_ipv6_loopback() -> None:
    with DnsServer(ZONE, host="::1") as server:
        assert check(dns_monitor("api.example.com", server.address))[0] == "ok"
        assert server.queries == [("api.example.com", "A")]


def test_it_gives_up_on_a_resolver_that_never_answers() -> None:
    with DnsServer(ZONE, silent=True) as server:
        assert check(dns_monitor("api.example.com", server.address, timeout=1)) == (
            "error",
            "timed out after 1 s",
        )
        assert server.queries == [("api.example.com", "A")]


def test_it_reports_a_resolver_port_where_nothing_listens() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert check(dns_monitor("api.example.com", f"127.0.0.1:{port}")) == (
        "error",
        f"connection refused by resolver 127.0.0.1:{port}",
    )


def test_it_refuses_a_resolver_at_a_cloud_metadata_address() -> None:
    assert check(dns_monitor("api.example.com", "169.254.169.254")) == (
        "error",
        "connecting to 169.254.169.254 is not allowed (PROBE_DENY_NETWORKS); "
        "add it to PROBE_ALLOW_NETWORKS to probe it",
    )


def test_it_names_each_bad_option() -> None:
    monitor = Monitor(
        name="bad",
        kind="dns",
        target="http://api.example.com/",
        options={
            "record_type": "SRV",
            "resolver": "dns.example.com:port",
            "expected": ["10.0.0.300", 7],
            "ttl": 60,
        },
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    errors = caught.value.message_dict
    assert errors["target"] == ["must be a name to resolve, e.g. api.example.com"]
    assert errors["options"] == [
        "ttl: unknown option (known: expected, latency_critical_ms, latency_warning_ms, rcode, "
        "record_type, resolver)",
        "record_type: must be one of A, AAAA, CNAME, MX, TXT, got 'SRV'",
        "resolver: must be an IP address or host:port "
        "(the port must be a number from 1 to 65535, got 'port')",
        "expected: '10.0.0.300' is not an IPv4 address",
        "expected: each value must be non-empty text, got 7",
    ]


def test_it_checks_expected_answers_against_the_record_type() -> None:
    monitor = Monitor(
        name="bad",
        kind="dns",
        target="example.com",
        options={"record_type": "MX", "expected": ["mail.example.com"], "resolver": "::1"},
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    assert caught.value.message_dict["options"] == [
        "expected: 'mail.example.com' is not an MX answer like '10 mail.example.com'"
    ]
    monitor.options = {"rcode": "NXDOMAIN", "expected": ["192.0.2.1"]}
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    assert caught.value.message_dict["options"] == [
        "expected: answers cannot be expected with rcode NXDOMAIN"
    ]
