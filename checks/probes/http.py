"""HTTP(S) probe: status, latency, body keywords, regexes and JSON fields."""

from __future__ import annotations

import codecs
import ipaddress
import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import aiohttp
from django.conf import settings
from yarl import URL

from checks.assertions import Rule, parse_code_set, parse_path
from checks.models import Assertion
from checks.netpolicy import DeniedAddress, check_address
from checks.probes.base import Observation, OptionErrors, Options, Probe, ProbeSpec
from checks.probes.httpclient import (
    HttpClient,
    HttpClientError,
    Request,
    basic_authorization,
)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 5
OPERATORS = tuple(Assertion.Operator.values)
KNOWN = {
    "method", "headers", "body", "basic_auth", "bearer_token", "accepted_codes",
    "follow_redirects", "verify_tls", "keyword", "keyword_absent", "regex", "json",
    "latency_warning_ms", "latency_critical_ms",
}  # fmt: skip
# Keys a failing health endpoint commonly puts its own explanation under.
ERROR_KEYS = ("error", "message", "detail", "reason")


@dataclass(frozen=True)
class HttpConfig:
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    basic_auth: tuple[str, str] | None = None
    bearer_token: str | None = None
    accepted_codes: str = "200-299"
    follow_redirects: bool = True
    verify_tls: bool = True
    keyword: str | None = None
    keyword_absent: str | None = None
    regex: str | None = None
    json_rules: tuple[dict[str, str], ...] = ()
    latency_warning_ms: float | None = None
    latency_critical_ms: float | None = None


def parse(target: str, raw: Any, errors: OptionErrors) -> HttpConfig:
    url = URL(target) if target else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        errors.target(
            "must be an http:// or https:// URL with a host, e.g. https://api.example.com/health"
        )
    opts = Options(raw, KNOWN, errors)
    method = opts.str("method", "GET", METHODS)
    accepted = opts.str("accepted_codes", "200-299")
    try:
        parse_code_set(accepted)
    except ValueError:
        errors.option(
            "accepted_codes", f"must be codes and ranges like 200-299, 301; got {accepted!r}"
        )
    basic = opts.mapping("basic_auth")
    if basic and set(basic) != {"username", "password"}:
        errors.option("basic_auth", 'must be {"username": ..., "password": ...}')
    regex = opts.str("regex")
    if regex:
        try:
            re.compile(regex)
        except re.error as exc:
            errors.option("regex", f"is not a valid regular expression ({exc})")
    json_rules = tuple(_json_rules(opts.list("json"), errors))
    warning = opts.number("latency_warning_ms", None, 1, 600_000)
    critical = opts.number("latency_critical_ms", None, 1, 600_000)
    if warning and critical and warning >= critical:
        errors.option("latency_warning_ms", "must be below latency_critical_ms")
    return HttpConfig(
        url=target,
        method=method,
        headers=opts.mapping("headers"),
        body=opts.str("body"),
        basic_auth=(basic["username"], basic["password"]) if len(basic) == 2 else None,
        bearer_token=opts.str("bearer_token"),
        accepted_codes=accepted,
        follow_redirects=opts.bool("follow_redirects", True),
        verify_tls=opts.bool("verify_tls", True),
        keyword=opts.str("keyword"),
        keyword_absent=opts.str("keyword_absent"),
        regex=regex,
        json_rules=json_rules,
        latency_warning_ms=warning,
        latency_critical_ms=critical,
    )


def _json_rules(items: list[Any], errors: OptionErrors) -> list[dict[str, str]]:
    rules = []
    for number, item in enumerate(items, start=1):
        where = f"json[{number}]"
        if not isinstance(item, dict) or "path" not in item or "value" not in item:
            errors.option(where, 'must be {"path": "$.status", "op": "eq", "value": "ready"}')
            continue
        try:
            parse_path(str(item["path"]))
        except ValueError as exc:
            errors.option(where, str(exc))
            continue
        op = item.get("op", "eq")
        if op not in OPERATORS:
            errors.option(where, f"op must be one of {', '.join(OPERATORS)}, got {op!r}")
            continue
        value = item["value"]
        rules.append(
            {
                "path": str(item["path"]),
                "op": op,
                "value": value if isinstance(value, str) else json.dumps(value),
            }
        )
    return rules


# A worker sees every monitor of its region within an interval, so the cache
# must hold the fleet to save anything; an entry is about 0.6 KB.
@lru_cache(maxsize=32768)
def _parsed(target: str, options: str) -> tuple[HttpConfig, dict[str, list[str]]]:
    errors = OptionErrors()
    return parse(target, json.loads(options), errors), errors.errors


# One encoder for every cache key: json.dumps(sort_keys=True) builds a new one per call.
_options_key = json.JSONEncoder(sort_keys=True).encode


def config_for(spec: ProbeSpec) -> tuple[HttpConfig, dict[str, list[str]]]:
    """The spec's config, parsed once per distinct target and options in this process."""
    return _parsed(spec.target, _options_key(spec.options) if spec.options else "{}")


class TooManyRedirects(Exception):
    pass


class HttpProbe(Probe):
    kind = "http"

    parse = staticmethod(parse)

    def implicit_rules(self, spec: ProbeSpec) -> list[Rule]:
        config, _ = config_for(spec)
        rules = [Rule("status", "status_code", "in", critical=config.accepted_codes)]
        if config.keyword:
            rules.append(Rule("keyword", "body", "contains", critical=config.keyword))
        if config.keyword_absent:
            rules.append(
                Rule("keyword_absent", "body", "not_contains", critical=config.keyword_absent)
            )
        if config.regex:
            rules.append(Rule("regex", "body", "matches", critical=config.regex))
        for number, item in enumerate(config.json_rules):
            rules.append(
                Rule(
                    f"json{number}",
                    "json_path",
                    item["op"],
                    critical=item["value"],
                    selector=item["path"],
                )
            )
        if config.latency_warning_ms or config.latency_critical_ms:
            rules.append(
                Rule(
                    "latency",
                    "latency",
                    "lt",
                    critical=_number(config.latency_critical_ms),
                    warning=_number(config.latency_warning_ms),
                )
            )
        return rules

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        config, errors = config_for(spec)
        if errors:
            return Observation.failed(f"invalid options: {errors}")
        started = time.perf_counter()
        try:
            status, headers, body, final_url = await self.fetch(config, resources.http_client)
        except Exception as exc:
            return Observation.failed(describe_error(exc), (time.perf_counter() - started) * 1000)
        latency = (time.perf_counter() - started) * 1000
        values: dict[str, Any] = {"status_code": status, "headers": headers, "body": body}
        document = _json(body, headers)
        if document is not None:
            values["json"] = document
            if isinstance(document, dict):
                said = next(
                    (document[k] for k in ERROR_KEYS if isinstance(document.get(k), str)), None
                )
                if said:
                    values["error_text"] = said
        info = {"url": final_url} if final_url != config.url else {}
        return Observation(
            values=values,
            latency_ms=latency,
            summary=f"HTTP {status} in {latency:.0f} ms",
            info=info,
        )

    async def fetch(
        self, config: HttpConfig, client: HttpClient
    ) -> tuple[int, dict[str, str], str, str]:
        """Follow redirects hop by hop, checking each hop, over the worker's HTTP client."""
        url = _url(config.url)
        method, data = config.method, config.body
        headers = {"User-Agent": settings.PROBE_USER_AGENT, **config.headers}
        if config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        if config.basic_auth:
            headers["Authorization"] = basic_authorization(*config.basic_auth)
        for _hop in range(MAX_REDIRECTS + 1):
            if url.scheme not in ("http", "https"):
                raise DeniedAddress(
                    f"redirected to {url.scheme}: URL; only http and https are probed"
                )
            if url.user is not None:
                # Credentials in the URL are sent as basic auth, never in the request line.
                if "Authorization" not in headers:
                    headers["Authorization"] = basic_authorization(url.user, url.password or "")
                url = url.with_user(None)
            if url.host and _is_ip(url.host):
                check_address(url.host)
            reply = await client.exchange(
                Request(method, url, headers, data, config.verify_tls, settings.PROBE_BODY_LIMIT)
            )
            location = reply.headers.get("location")
            if config.follow_redirects and reply.status in REDIRECTS and location:
                next_url = url.join(URL(location))
                if reply.status == 303 or (reply.status in (301, 302) and method == "POST"):
                    method, data = "GET", None
                if next_url.host != url.host:
                    # credentials never follow a redirect to another host
                    headers.pop("Authorization", None)
                url = next_url
                continue
            body = reply.body.decode(_charset(reply.headers.get("content-type")), "replace")
            return reply.status, reply.headers, body, str(url)
        raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects (a redirect loop?)")


# Parsing the URL was 3% of a probe worker's CPU; URLs are immutable, so keep them.
_url = lru_cache(maxsize=32768)(URL)


@lru_cache(maxsize=256)
def _charset(content_type: str | None) -> str:
    """The body's encoding: the Content-Type's charset when Python knows it, else UTF-8."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip('"')).name
            except LookupError:
                break
    return "utf-8"


def _json(body: str, headers: dict[str, str]) -> Any:
    stripped = body.lstrip()
    if not stripped:
        return None
    if stripped[0] not in "[{" and "json" not in headers.get("content-type", ""):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


@lru_cache(maxsize=16384)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def describe_error(exc: BaseException) -> str:
    """One readable line for whatever stopped an HTTP probe."""
    cause = exc
    while True:
        if isinstance(cause, DeniedAddress):
            return str(cause)
        nested = getattr(cause, "os_error", None) or cause.__cause__
        if nested is None or nested is cause:
            break
        cause = nested
    if isinstance(exc, TooManyRedirects | HttpClientError):
        return str(exc)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate rejected for {exc.host}: {exc.certificate_error.verify_message}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return f"TLS handshake failed: {_first_line(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"connection refused by {exc.host}:{exc.port}"
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"could not read the body: {_first_line(exc)}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"bad HTTP response: {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL {exc.url}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


PROBE = HttpProbe()
