"""The http probe against real servers on loopback, judged as a user reads it."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from checks.models import Assertion, Monitor
from checks.services import run_now
from tests.probing import check, saved_monitor
from tests.targets import HttpTarget, closed_port, silent_tcp_server

pytestmark = pytest.mark.django_db

READY = {"status": "ready", "database": "connected"}
NOT_READY = {"status": "not_ready", "database": "disconnected", "error": "Connection refused"}
READINESS_RULES = [
    {"path": "$.status", "value": "ready"},
    {"path": "$.database", "value": "connected"},
]


def http_monitor(url: str, timeout: float = 5, **options: object) -> Monitor:
    return saved_monitor("http", url, "api", options=options, timeout=timeout)


def test_it_is_ok_for_a_ready_endpoint(target: HttpTarget) -> None:
    target.route("/health/ready", body=READY)
    outcome, reason = check(http_monitor(target.url("/health/ready"), json=READINESS_RULES))
    assert outcome == "ok"
    assert reason.startswith("HTTP 200 in ")


def test_it_names_the_broken_field_and_the_error_of_a_readiness_endpoint(
    target: HttpTarget,
) -> None:
    target.route("/health/ready", status=503, body=NOT_READY)
    monitor = http_monitor(target.url("/health/ready"), json=READINESS_RULES)
    outcome, reason = check(monitor)
    assert outcome == "critical"
    assert '$.database is "disconnected", expected "connected"' in reason
    assert '$.status is "not_ready", expected "ready"' in reason
    assert "HTTP status is 503, expected one of 200-299" in reason
    assert reason.endswith('(error: "Connection refused")')


def test_it_judges_a_nested_boolean_in_the_body(target: HttpTarget) -> None:
    target.route("/ready", body={"services": {"database": False, "redis": True}})
    rules = [{"path": "$.services.database", "value": True}]
    outcome, reason = check(http_monitor(target.url("/ready"), json=rules))
    assert (outcome, reason) == ("critical", "$.services.database is false, expected true")


def test_it_reports_a_missing_json_field(target: HttpTarget) -> None:
    target.route("/ready", body={"status": "ready"})
    rules = [{"path": "$.database", "value": "connected"}]
    assert check(http_monitor(target.url("/ready"), json=rules)) == (
        "critical",
        "$.database is missing",
    )


def test_it_checks_keywords_and_regexes(target: HttpTarget) -> None:
    target.route("/", body="<h1>Service degraded: maintenance</h1>")
    outcome, reason = check(
        http_monitor(
            target.url("/"), keyword="operational", keyword_absent="maintenance", regex=r"v\d+"
        )
    )
    assert outcome == "critical"
    assert 'body does not contain "operational"' in reason
    assert 'body contains "maintenance"' in reason
    assert r"body does not match /v\d+/" in reason


def test_it_goes_yellow_then_red_on_latency(target: HttpTarget) -> None:
    target.route("/slow", body="ok", delay=0.3)
    monitor = http_monitor(target.url("/slow"), latency_warning_ms=100, latency_critical_ms=1000)
    outcome, reason = check(monitor)
    assert outcome == "warning"
    assert reason.startswith("latency ") and reason.endswith(" ms ≥ 100 ms")
    Assertion.objects.create(monitor=monitor, source="latency", operator="lt", critical_value="200")
    assert check(monitor)[0] == "critical"


def test_it_accepts_status_lists_and_ranges(target: HttpTarget) -> None:
    target.route("/gone", status=410)
    assert check(http_monitor(target.url("/gone"), accepted_codes="200-299, 410"))[0] == "ok"
    assert check(http_monitor(target.url("/gone")))[1] == (
        "HTTP status is 410, expected one of 200-299"
    )


def test_it_sends_method_headers_body_and_auth(target: HttpTarget) -> None:
    target.route("/hook", status=201)
    monitor = http_monitor(
        target.url("/hook"),
        method="POST",
        headers={"X-Probe": "yes"},
        body='{"ping": 1}',
        bearer_token="t0ken",
    )
    assert check(monitor)[0] == "ok"
    sent = target.requests[-1]
    assert sent["method"] == "POST"
    assert sent["body"] == b'{"ping": 1}'
    assert sent["headers"]["X-Probe"] == "yes"
    assert sent["headers"]["Authorization"] == "Bearer t0ken"
    assert sent["headers"]["User-Agent"].startswith("Watchpost/")


def test_it_follows_redirects_and_stops_a_loop(target: HttpTarget) -> None:
    target.redirect("/old", "/new", 301)
    target.route("/new", body="here")
    assert check(http_monitor(target.url("/old")))[0] == "ok"
    target.redirect("/a", "/b")
    target.redirect("/b", "/a")
    assert check(http_monitor(target.url("/a"))) == (
        "error",
        "more than 5 redirects (a redirect loop?)",
    )
    assert (
        check(http_monitor(target.url("/old"), follow_redirects=False, accepted_codes="301"))[0]
        == "ok"
    )


def test_it_refuses_cloud_metadata_addresses_even_through_a_redirect(target: HttpTarget) -> None:
    outcome, reason = check(http_monitor("http://169.254.169.254/latest/meta-data/"))
    assert outcome == "error"
    assert "169.254.169.254 is not allowed" in reason
    target.redirect("/sneaky", "http://169.254.169.254/latest/meta-data/")
    outcome, reason = check(http_monitor(target.url("/sneaky")))
    assert (outcome, "169.254.169.254 is not allowed" in reason) == ("error", True)
    target.redirect("/file", "file:///etc/passwd")
    assert "only http and https are probed" in check(http_monitor(target.url("/file")))[1]


def test_it_checks_the_address_a_name_resolves_to(target: HttpTarget) -> None:
    target.route("/", body="ok")
    # localhost resolves to loopback: allowed by default, refused when denied.
    assert check(http_monitor(target.url("/", host="localhost")))[0] == "ok"
    with override_settings(PROBE_DENY_NETWORKS=["127.0.0.0/8", "::1/128"]):
        outcome, reason = check(http_monitor(target.url("/", host="localhost")))
    assert outcome == "error"
    assert "connecting to localhost (127.0.0.1" in reason


def test_it_reports_a_refused_connection() -> None:
    port = closed_port()
    assert check(http_monitor(f"http://127.0.0.1:{port}/")) == (
        "error",
        f"connection refused by 127.0.0.1:{port}",
    )


def test_it_gives_up_on_a_server_that_never_answers() -> None:
    with silent_tcp_server() as port:
        assert check(http_monitor(f"http://127.0.0.1:{port}/", timeout=1)) == (
            "error",
            "timed out after 1 s",
        )


def test_it_keeps_an_overall_deadline_against_a_dripping_server(target: HttpTarget) -> None:
    target.route("/drip", body=b"x" * 100, drip=0.2)
    assert check(http_monitor(target.url("/drip"), timeout=1)) == ("error", "timed out after 1 s")


@override_settings(PROBE_BODY_LIMIT=64 * 1024)
def test_it_reads_at_most_the_body_limit_even_compressed(target: HttpTarget) -> None:
    target.gzip_bomb("/bomb", 50 * 1024 * 1024)
    target.route("/big", body=b"a" * (5 * 1024 * 1024) + b"needle")
    run, verdict = run_now(http_monitor(target.url("/bomb"), keyword="1"))
    assert verdict.outcome == "critical"
    assert len(run.observation.values["body"]) == 64 * 1024
    run, verdict = run_now(http_monitor(target.url("/big"), keyword="needle"))
    assert verdict.reason == 'body does not contain "needle"'


def test_it_names_each_bad_option() -> None:
    monitor = Monitor(
        name="bad",
        kind="http",
        target="ftp://example.com",
        options={"method": "FETCH", "accepted_codes": "2xx", "colour": "red", "regex": "("},
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    errors = caught.value.message_dict
    assert errors["target"] == [
        "must be an http:// or https:// URL with a host, e.g. https://api.example.com/health"
    ]
    options = " | ".join(errors["options"])
    assert "method: must be one of GET, HEAD" in options
    assert "accepted_codes: must be codes and ranges like 200-299, 301; got '2xx'" in options
    assert "colour: unknown option" in options
    assert "regex: is not a valid regular expression" in options
