"""The http probe against real servers on loopback, judged as a user reads it."""

from __future__ import annotations

import gzip
import socket
import ssl
import zlib
from collections.abc import Callable, Iterator

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from checks.models import Assertion, Monitor
from checks.probes import httpclient
from checks.services import run_now
from tests.probing import check, check_in_turn, saved_monitor
from tests.targets import (
    Answer,
    Exchange,
    HttpTarget,
    LoopbackServer,
    RawHttpServer,
    closed_port,
    silent_tcp_server,
)
from tests.tls_certs import TestCA, server_context

# Every test runs once with each HTTP client (PROBE_HTTP_CLIENT): users must
# not be able to tell which one probed.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("http_client")]

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


def test_it_reports_a_name_that_does_not_resolve() -> None:
    assert check(http_monitor("http://db.nowhere.invalid/health")) == (
        "error",
        "DNS lookup failed for db.nowhere.invalid",
    )


def test_it_sends_host_encodings_and_basic_auth_as_servers_expect(target: HttpTarget) -> None:
    target.route("/", body="ok")
    monitor = http_monitor(target.url("/"), basic_auth={"username": "ops", "password": "s3cret"})
    assert check(monitor)[0] == "ok"
    sent = target.requests[-1]["headers"]
    assert sent["Host"] == f"127.0.0.1:{target.port}"
    assert sent["Authorization"] == "Basic b3BzOnMzY3JldA=="
    assert sent["Accept-Encoding"].startswith("gzip, deflate")
    # Credentials written into the URL go the same way, never in the request line.
    assert check(http_monitor(target.url("/").replace("://", "://ops:s3cret@")))[0] == "ok"
    assert target.requests[-1]["headers"]["Authorization"] == "Basic b3BzOnMzY3JldA=="
    assert target.requests[-1]["path"] == "/"


def test_it_drops_credentials_on_a_redirect_to_another_host(target: HttpTarget) -> None:
    target.redirect("/login", target.url("/landing", host="localhost"))
    target.route("/landing", body="ok")
    assert check(http_monitor(target.url("/login"), bearer_token="t0ken"))[0] == "ok"
    assert [r["path"] for r in target.requests] == ["/login", "/landing"]
    assert "Authorization" not in target.requests[-1]["headers"]


def test_it_reads_compressed_bodies_and_their_charset(target: HttpTarget) -> None:
    text = "Status: all systems opérationnels"
    target.route("/gz", body=gzip.compress(text.encode()), headers={"Content-Encoding": "gzip"})
    target.route(
        "/zlib", body=zlib.compress(text.encode()), headers={"Content-Encoding": "deflate"}
    )
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    target.route(
        "/raw",
        body=raw.compress(text.encode()) + raw.flush(),
        headers={"Content-Encoding": "deflate"},
    )
    target.route(
        "/latin",
        body=text.encode("latin-1"),
        headers={"Content-Type": "text/plain; charset=latin-1"},
    )
    for path in ("/gz", "/zlib", "/raw", "/latin"):
        assert check(http_monitor(target.url(path), keyword="opérationnels"))[0] == "ok", path


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def trusted_ca(ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> TestCA:
    """A CA the probes trust, as they trust a public CA in production."""
    context = ssl.create_default_context()
    ca.ca.configure_trust(context)
    plain = httpclient.tls_context
    monkeypatch.setattr(
        httpclient, "tls_context", lambda verify: context if verify else plain(False)
    )
    return ca


@pytest.fixture
def tls_targets() -> Iterator[list[HttpTarget]]:
    targets: list[HttpTarget] = []
    yield targets
    for target in targets:
        target.close()


def tls_target(targets: list[HttpTarget], key_and_chain: bytes) -> HttpTarget:
    target = HttpTarget(tls=server_context(key_and_chain))
    target.route("/", body="ok")
    targets.append(target)
    return target


def test_it_rejects_a_certificate_nobody_vouches_for_unless_told(
    ca: TestCA, tls_targets: list[HttpTarget]
) -> None:
    target = tls_target(tls_targets, ca.issue("localhost"))
    assert check(http_monitor(target.url("/", host="localhost"))) == (
        "error",
        "TLS certificate rejected for localhost: unable to get local issuer certificate",
    )
    outcome, reason = check(http_monitor(target.url("/", host="localhost"), verify_tls=False))
    assert (outcome, reason.startswith("HTTP 200 in ")) == ("ok", True)


def test_it_checks_the_certificate_against_the_name_it_was_given(
    trusted_ca: TestCA, tls_targets: list[HttpTarget]
) -> None:
    # localhost resolves to 127.0.0.1; the certificate must still be for localhost.
    right = tls_target(tls_targets, trusted_ca.issue("localhost"))
    other = tls_target(tls_targets, trusted_ca.issue("api.example"))
    expired = tls_target(tls_targets, trusted_ca.issue("localhost", days=-3))
    assert check(http_monitor(right.url("/", host="localhost")))[0] == "ok"
    assert check(http_monitor(other.url("/", host="localhost"))) == (
        "error",
        "TLS certificate rejected for localhost: "
        "Hostname mismatch, certificate is not valid for 'localhost'.",
    )
    assert check(http_monitor(expired.url("/", host="localhost"))) == (
        "error",
        "TLS certificate rejected for localhost: certificate has expired",
    )
    assert check(http_monitor(expired.url("/", host="localhost"), verify_tls=False))[0] == "ok"


def test_it_names_a_failed_tls_handshake(target: HttpTarget) -> None:
    outcome, reason = check(http_monitor(target.url("/").replace("http:", "https:")))
    assert outcome == "error"
    assert reason.startswith("TLS handshake failed: [SSL")
    assert "wrong version number" in reason


# --- Servers that bend HTTP ------------------------------------------------------------------


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    """An HTTP/1.1 answer; Content-Length is added unless the headers frame the body."""
    head = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture
def servers() -> Iterator[list[RawHttpServer]]:
    started: list[RawHttpServer] = []
    yield started
    for server in started:
        server.close()


def serve(servers: list[RawHttpServer], script: Callable[[Exchange], Answer | None]) -> str:
    server = RawHttpServer(script)
    servers.append(server)
    return server.url("/")


def test_it_reads_chunked_bodies_and_bodies_that_end_with_the_connection(
    servers: list[RawHttpServer],
) -> None:
    chunked = b"Transfer-Encoding: chunked\r\n\r\n6\r\nall sy\r\n8\r\nstems go\r\n0\r\n\r\n"
    old = b"HTTP/1.0 200 OK\r\n\r\nall systems go"
    urls = [
        serve(servers, lambda _: Answer(b"HTTP/1.1 200 OK\r\n" + chunked)),
        serve(servers, lambda _: Answer(old, then="close")),
    ]
    for url in urls:
        assert check(http_monitor(url, keyword="all systems go"))[0] == "ok", url


def test_it_skips_informational_answers(servers: list[RawHttpServer]) -> None:
    informational = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    )
    url = serve(servers, lambda _: Answer(informational + answer(b"ready")))
    outcome, reason = check(http_monitor(url, keyword="ready"))
    assert (outcome, reason.startswith("HTTP 200 in ")) == ("ok", True)


def test_it_keeps_connections_alive_across_probes(servers: list[RawHttpServer]) -> None:
    def script(exchange: Exchange) -> Answer:
        if exchange.request.startswith(b"HEAD"):
            return Answer(answer(b"", "Content-Length: 1000"))  # a HEAD answer has no body
        if exchange.request.startswith(b"GET /empty"):
            return Answer(answer(b"", status="204 No Content"))
        if exchange.request.startswith(b"GET /chunked"):
            return Answer(answer(b"4\r\nfine\r\n0\r\n\r\n", "Transfer-Encoding: chunked"))
        return Answer(answer(b"fine"))

    url = serve(servers, script)
    outcomes = check_in_turn(
        http_monitor(url, method="HEAD"),
        http_monitor(f"{url}empty"),
        http_monitor(url, keyword="fine"),
        http_monitor(f"{url}chunked", keyword="fine"),
        http_monitor(url, method="HEAD"),
        http_monitor(url, keyword="fine"),
    )
    assert [outcome for outcome, _ in outcomes] == ["ok"] * 6
    assert servers[0].connections == 1


def test_it_opens_a_new_connection_when_the_server_says_close(
    servers: list[RawHttpServer],
) -> None:
    # The server says it closes, then holds the connection and reads no more: a
    # client that missed the header would wait for an answer that never comes.
    url = serve(servers, lambda _: Answer(answer(b"fine", "Connection: close"), then="hang"))
    monitor = http_monitor(url, timeout=2, keyword="fine")
    assert [outcome for outcome, _ in check_in_turn(monitor, monitor)] == ["ok", "ok"]
    assert servers[0].connections == 2


def first_answer_only(exchange: Exchange, answered: set[int]) -> Answer | None:
    """Answers each connection once, then closes it on its next request, unanswered:
    a server whose keep-alive timeout ran out just as the request was sent."""
    if exchange.connection in answered:
        return None
    answered.add(exchange.connection)
    return Answer(answer(b"fine"))


def test_it_asks_again_when_a_kept_connection_was_closed_meanwhile(
    servers: list[RawHttpServer],
) -> None:
    answered: set[int] = set()
    url = serve(servers, lambda exchange: first_answer_only(exchange, answered))
    get = http_monitor(url, keyword="fine")
    assert [outcome for outcome, _ in check_in_turn(get, get)] == ["ok", "ok"]
    assert servers[0].connections == 2


def test_it_never_sends_a_post_twice(servers: list[RawHttpServer]) -> None:
    answered: set[int] = set()
    url = serve(servers, lambda exchange: first_answer_only(exchange, answered))
    post = http_monitor(url, method="POST", body="{}")
    outcomes = check_in_turn(post, post)
    assert outcomes[0][0] == "ok"
    assert outcomes[1] == ("error", "the server closed the connection without answering")
    assert len(servers[0].exchanges) == 2


def test_it_explains_servers_that_do_not_answer_in_http(servers: list[RawHttpServer]) -> None:
    silent = serve(servers, lambda _: None)
    cut = serve(servers, lambda _: Answer(answer(b"x" * 10, "Content-Length: 100"), "close"))
    ssh = serve(servers, lambda _: Answer(b"SSH-2.0-OpenSSH_9.6\r\n", "close"))
    assert check(http_monitor(silent)) == (
        "error",
        "the server closed the connection without answering",
    )
    outcome, reason = check(http_monitor(cut))
    assert (outcome, reason.startswith("could not read the body: ")) == ("error", True)
    outcome, reason = check(http_monitor(ssh))
    assert (outcome, reason.startswith("bad HTTP response: ")) == ("error", True)


class SpeaksFirst(LoopbackServer):
    """An SSH server: says its banner on connecting, before any request."""

    def handle(self, conn: socket.socket, number: int) -> None:
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            self.stop.wait(5)


def test_it_explains_a_server_that_speaks_first() -> None:
    with SpeaksFirst() as ssh:
        outcome, reason = check(http_monitor(f"http://127.0.0.1:{ssh.port}/", timeout=2))
    assert (outcome, reason.startswith("bad HTTP response: ")) == ("error", True)


@override_settings(PROBE_BODY_LIMIT=64 * 1024)
def test_it_never_reuses_a_connection_whose_body_it_left_unread(
    servers: list[RawHttpServer],
) -> None:
    url = serve(servers, lambda _: Answer(answer(b"a" * 1024 * 1024 + b"needle")))
    big = http_monitor(url, keyword="a")
    assert [outcome for outcome, _ in check_in_turn(big, big)] == ["ok", "ok"]
    assert servers[0].connections == 2


def test_it_abandons_a_connection_a_probe_timed_out_on(target: HttpTarget) -> None:
    # Reusing it would read the late answer to the first request as the second's.
    target.route("/slow", body="late", delay=1.5)
    target.route("/fast", body="fast")
    outcomes = check_in_turn(
        http_monitor(target.url("/slow"), timeout=1),
        http_monitor(target.url("/fast"), keyword="fast"),
    )
    assert outcomes[0] == ("error", "timed out after 1 s")
    assert outcomes[1][0] == "ok"
