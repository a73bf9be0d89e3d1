"""What each probe kind's target and options mean: the one table the admin's help is built from.

The probe modules own validation (their `parse()` and `KNOWN`); this table
owns the words. `kind_help()` reconciles the two at run time, so the admin
never offers an option the probe would reject, and lists (undescribed) any
option the probe accepts that the table does not know yet.
tests/checks/test_admin.py fails when the table and a probe module drift apart.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from checks.probes import PROBE_MODULES

TEXT, NUMBER, BOOL, OBJECT, LIST = "text", "number", "true/false", "object", "list"


@dataclass(frozen=True)
class Option:
    name: str
    type: str
    default: Any = None  # None: unset unless given
    help: str = ""

    @property
    def shown_default(self) -> str:
        return "—" if self.default is None else json.dumps(self.default)


@dataclass(frozen=True)
class KindHelp:
    kind: str
    target: str
    target_example: str
    options: tuple[Option, ...] = ()
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def example_json(self) -> str:
        return json.dumps(self.example, indent=2, ensure_ascii=False)


def _latency(unit: str = "the probe") -> tuple[Option, Option]:
    return (
        Option("latency_warning_ms", NUMBER, None, f"warning when {unit} takes at least this long"),
        Option("latency_critical_ms", NUMBER, None, f"critical when {unit} takes this long"),
    )


KINDS: dict[str, KindHelp] = {
    "http": KindHelp(
        "http",
        "an http:// or https:// URL",
        "https://api.example.com/health/ready",
        (
            Option("method", TEXT, "GET", "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"),
            Option("headers", OBJECT, {}, 'request headers, e.g. {"X-Token": "abc"}'),
            Option("body", TEXT, None, "request body, sent as is"),
            Option("basic_auth", OBJECT, None, '{"username": "...", "password": "..."}'),
            Option("bearer_token", TEXT, None, "sent as Authorization: Bearer <token>"),
            Option("accepted_codes", TEXT, "200-299", "status codes and ranges that are healthy"),
            Option("follow_redirects", BOOL, True, "follow up to 5 redirects"),
            Option("verify_tls", BOOL, True, "reject invalid certificates"),
            Option("keyword", TEXT, None, "the body must contain this text"),
            Option("keyword_absent", TEXT, None, "the body must not contain this text"),
            Option("regex", TEXT, None, "the body must match this regular expression"),
            Option(
                "json",
                LIST,
                [],
                'JSON fields that must hold: [{"path": "$.status", "op": "eq", "value": "ready"}]',
            ),
            *_latency("the response"),
        ),
        {
            "accepted_codes": "200",
            "json": [
                {"path": "$.status", "value": "ready"},
                {"path": "$.database", "value": "connected"},
            ],
            "latency_warning_ms": 500,
            "latency_critical_ms": 2000,
        },
    ),
    "tcp": KindHelp(
        "tcp",
        "host:port (an IPv6 address as [::1]:5432)",
        "db.internal:5432",
        _latency("connecting"),
        {"latency_warning_ms": 100, "latency_critical_ms": 1000},
    ),
    "dns": KindHelp(
        "dns",
        "a host name to resolve",
        "api.example.com",
        (
            Option("record_type", TEXT, "A", "A, AAAA, CNAME, MX or TXT"),
            Option("resolver", TEXT, None, "ask this server (IP or host:port), not the system's"),
            Option(
                "expected",
                LIST,
                [],
                'answers that must be among those returned, e.g. "10 mx.example.com" for MX',
            ),
            Option(
                "rcode",
                TEXT,
                "NOERROR",
                "the expected answer code: NOERROR, NXDOMAIN, SERVFAIL or REFUSED",
            ),
            *_latency("the lookup"),
        ),
        {"record_type": "A", "expected": ["203.0.113.10"], "latency_critical_ms": 500},
    ),
    "tls": KindHelp(
        "tls",
        "host or host:port (port 443 when left out)",
        "api.example.com:443",
        (
            Option("server_name", TEXT, None, "SNI and the name to verify, when not the host"),
            Option("ca_cert", TEXT, None, "a private CA's certificate in PEM, trusted as well"),
            Option("warning_days", NUMBER, 14, "warning when the certificate expires sooner"),
            Option("critical_days", NUMBER, 7, "critical when the certificate expires sooner"),
        ),
        {"warning_days": 30, "critical_days": 7},
    ),
    "postgres": KindHelp(
        "postgres",
        "a postgres:// URL with a user (sslmode and application_name may follow ?)",
        "postgres://watchpost:secret@db.internal:5432/app",
        (
            Option(
                "connections_warning_pct", NUMBER, 80, "warning at this share of the pool in use"
            ),
            Option("connections_critical_pct", NUMBER, 95, "critical at this share of the pool"),
            Option(
                "pool_size", NUMBER, None, "connections counted against this, not max_connections"
            ),
            Option("query", TEXT, None, "one read-only SELECT whose first value is judged"),
            Option(
                "query_operator",
                TEXT,
                "lt",
                "how the value compares when healthy: lt, le, gt, ge, eq, ne...",
            ),
            Option("query_warning", TEXT, None, "warning when the value breaks this"),
            Option("query_critical", TEXT, None, "critical when the value breaks this"),
            *_latency("logging in and querying"),
        ),
        {
            "pool_size": 50,
            "query": "SELECT count(*) FROM jobs WHERE state = 'queued'",
            "query_warning": 100,
            "query_critical": 1000,
        },
    ),
    "redis": KindHelp(
        "redis",
        "a redis:// or rediss:// URL, the database number after the /",
        "redis://:secret@cache.internal:6379/0",
        (
            Option("memory_warning_pct", NUMBER, 80, "warning at this share of maxmemory"),
            Option("memory_critical_pct", NUMBER, 95, "critical at this share of maxmemory"),
            Option("clients_warning", NUMBER, None, "warning at this many connected clients"),
            Option("clients_critical", NUMBER, None, "critical at this many connected clients"),
            Option("verify_tls", BOOL, True, "reject invalid certificates (rediss://)"),
            *_latency("PING"),
        ),
        {"memory_warning_pct": 80, "memory_critical_pct": 95, "latency_critical_ms": 100},
    ),
    "prometheus": KindHelp(
        "prometheus",
        "the http(s):// URL of a /metrics page",
        "http://worker.internal:9100/metrics",
        (
            Option(
                "series",
                LIST,
                None,
                "what to read: [{selector, mode (value, increase, rate, quantile), quantile, "
                "op (le by default), warning, critical, name}]",
            ),
            Option("headers", OBJECT, {}, "request headers"),
            Option("bearer_token", TEXT, None, "sent as Authorization: Bearer <token>"),
            Option("basic_auth", OBJECT, None, '{"username": "...", "password": "..."}'),
            Option("verify_tls", BOOL, True, "reject invalid certificates"),
        ),
        {
            "series": [
                {"selector": "ws_messages_dropped_total", "mode": "increase", "critical": 0},
                {
                    "selector": "http_request_duration_seconds",
                    "mode": "quantile",
                    "quantile": 0.95,
                    "warning": 0.5,
                    "critical": 1,
                },
            ]
        },
    ),
    "websocket": KindHelp(
        "websocket",
        "a ws:// or wss:// URL",
        "wss://voice.example.com/ws",
        (
            Option("send", TEXT, None, "a message to send once connected"),
            Option("expect", TEXT, None, "the first reply must contain this text"),
            Option("headers", OBJECT, {}, "handshake headers, e.g. an Authorization token"),
            Option("verify_tls", BOOL, True, "reject invalid certificates (wss://)"),
        ),
        {"send": '{"type": "ping"}', "expect": "pong"},
    ),
    "heartbeat": KindHelp(
        "heartbeat",
        "blank: the job calls the monitor's ping URL (/ping/<ping key>)",
        "",
        (
            Option("period", NUMBER, None, "seconds between pings (or use cron)"),
            Option("cron", TEXT, None, 'when the job runs, e.g. "0 3 * * *" (or use period)'),
            Option("timezone", TEXT, "UTC", "the time zone cron is read in"),
            Option("grace", NUMBER, 60, "seconds a ping may be late before it counts as missed"),
        ),
        {"cron": "0 3 * * *", "timezone": "Europe/Berlin", "grace": 1800},
    ),
    "internal": KindHelp(
        "internal",
        "blank: Watchpost judges itself (the system tick and probe start lag)",
        "",
    ),
}


def known_options(kind: str) -> set[str] | None:
    """The option names the kind's probe module accepts; None if it cannot be loaded."""
    try:
        module = importlib.import_module(PROBE_MODULES[kind])
    except (KeyError, ImportError):
        return None
    known = getattr(module, "KNOWN", None)
    return set(known) if known is not None else None


def kind_help(kind: str) -> KindHelp:
    """The table's help for a kind, limited to the options its probe accepts."""
    doc = KINDS.get(kind) or KindHelp(kind, "see the probe's documentation", "")
    known = known_options(kind)
    if known is None:
        return doc
    described = [option for option in doc.options if option.name in known]
    names = {option.name for option in described}
    extra = [Option(name, "?", None, "(not described yet)") for name in sorted(known - names)]
    example = {name: value for name, value in doc.example.items() if name in known}
    return replace(doc, options=(*described, *extra), example=example)


def all_kind_help() -> list[KindHelp]:
    return [kind_help(kind) for kind in PROBE_MODULES]
