"""DNS probe: ask a resolver for a name's records, check the rcode and the answers.

The probe sends one query of its own (UDP, then TCP if the answer was
truncated) to the configured resolver, or to the system's when none is set,
so it sees the rcode itself rather than an exception, and it checks the
resolver's address against the network policy before sending anything.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.inet
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from checks.assertions import Rule
from checks.probes.base import Observation, OptionErrors, Options, Probe, ProbeSpec
from checks.probes.tcp import (
    Address,
    allowed_addresses,
    describe_error,
    is_hostname,
    is_ip,
    latency_options,
    latency_rules,
    parse_address,
)

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT")
RCODES = ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED")
KNOWN = {"record_type", "resolver", "expected", "rcode", "latency_warning_ms",
         "latency_critical_ms"}  # fmt: skip
SHOWN_ANSWERS = 5


@dataclass(frozen=True)
class DnsConfig:
    name: str
    record_type: str = "A"
    resolver: Address | None = None
    expected: tuple[str, ...] = ()
    rcode: str = "NOERROR"
    latency_warning_ms: float | None = None
    latency_critical_ms: float | None = None


def parse(target: str, raw: Any, errors: OptionErrors) -> DnsConfig:
    name = target.strip()
    if not name or is_ip(name) or not is_hostname(name):
        errors.target("must be a name to resolve, e.g. api.example.com")
    opts = Options(raw, KNOWN, errors)
    record_type = opts.str("record_type", "A", RECORD_TYPES)
    rcode = opts.str("rcode", "NOERROR", RCODES)
    resolver = None
    resolver_text = opts.str("resolver")
    if resolver_text:
        try:
            resolver = parse_resolver(resolver_text)
        except ValueError as exc:
            errors.option("resolver", f"must be an IP address or host:port ({exc})")
    expected = []
    for item in opts.list("expected"):
        try:
            expected.append(normalize(record_type, item))
        except ValueError as exc:
            errors.option("expected", str(exc))
    if expected and rcode != "NOERROR":
        errors.option("expected", f"answers cannot be expected with rcode {rcode}")
    warning, critical = latency_options(opts)
    return DnsConfig(
        name=name.lower().rstrip("."),
        record_type=record_type,
        resolver=resolver,
        expected=tuple(expected),
        rcode=rcode,
        latency_warning_ms=warning,
        latency_critical_ms=critical,
    )


def parse_resolver(text: str) -> Address:
    text = text.strip()
    if is_ip(text):
        return Address(text, 53)
    return parse_address(text, default_port=53)


def normalize(record_type: str, value: Any) -> str:
    """An expected answer written the way the probe writes answers."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"each value must be non-empty text, got {value!r}")
    value = value.strip()
    if record_type in ("A", "AAAA"):
        version = 4 if record_type == "A" else 6
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            address = None
        if address is None or address.version != version:
            raise ValueError(f"{value!r} is not an IPv{version} address")
        return str(address)
    if record_type == "CNAME":
        if not is_hostname(value):
            raise ValueError(f"{value!r} is not a host name")
        return name_text(dns.name.from_text(value))
    if record_type == "MX":
        preference, _, host = value.partition(" ")
        if not preference.isdigit() or not is_hostname(host.strip()):
            raise ValueError(f"{value!r} is not an MX answer like '10 mail.example.com'")
        return f"{int(preference)} {name_text(dns.name.from_text(host.strip()))}"
    return value


def name_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def answer_text(rdata: Any) -> str:
    rdtype = rdata.rdtype
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return str(ipaddress.ip_address(rdata.address))
    if rdtype == dns.rdatatype.CNAME:
        return name_text(rdata.target)
    if rdtype == dns.rdatatype.MX:
        return f"{rdata.preference} {name_text(rdata.exchange)}"
    if rdtype == dns.rdatatype.TXT:
        # A long TXT record is split into strings; readers join them.
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    return str(rdata.to_text())


def system_resolvers() -> list[Address]:
    """The resolvers of /etc/resolv.conf (read each time: it may change)."""
    resolver = dns.resolver.Resolver(configure=True)
    return [Address(str(server), resolver.port) for server in resolver.nameservers]


class DnsProbe(Probe):
    kind = "dns"
    target_label = "name"

    parse = staticmethod(parse)

    def implicit_rules(self, spec: ProbeSpec) -> list[Rule]:
        config = parse(spec.target, spec.options, OptionErrors())
        rules = [
            Rule(f"expected{number}", "dns_answer", "contains", critical=value)
            for number, value in enumerate(config.expected)
        ]
        return [*rules, *latency_rules(config.latency_warning_ms, config.latency_critical_ms)]

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        errors = OptionErrors()
        config = parse(spec.target, spec.options, errors)
        if errors.errors:
            return Observation.failed(f"invalid options: {errors.errors}")
        try:
            resolvers = [config.resolver] if config.resolver else system_resolvers()
        except dns.resolver.NoResolverConfiguration:
            return Observation.failed(
                "the system has no resolver configured; set the resolver option"
            )
        # With several system resolvers, each gets a share of the deadline.
        share = spec.timeout / len(resolvers) if len(resolvers) > 1 else None
        failures: list[str] = []
        for resolver in resolvers:
            started = time.perf_counter()
            try:
                response, server = await self.ask(config, resolver, share)
                answer = read_answer(response)
            except (OSError, EOFError, dns.exception.DNSException) as exc:
                failures.append(describe(exc, resolver, share))
                continue
            latency = (time.perf_counter() - started) * 1000
            return report(config, answer, server, latency)
        return Observation.failed("; ".join(failures))

    async def ask(
        self, config: DnsConfig, resolver: Address, timeout: float | None
    ) -> tuple[dns.message.Message, str]:
        server = (await allowed_addresses(resolver))[0]
        query = dns.message.make_query(config.name, config.record_type)
        family = dns.inet.af_for_address(server)
        # A connected socket hears at once that nothing listens there (the
        # port-unreachable reply), and takes answers from that address only.
        backend = dns.asyncbackend.get_default_backend()
        async with await backend.make_socket(
            family, socket.SOCK_DGRAM, 0, None, (server, resolver.port)
        ) as udp:
            response, _tcp = await dns.asyncquery.udp_with_fallback(
                query, server, timeout=timeout, port=resolver.port, udp_sock=udp
            )
        return response, str(Address(server, resolver.port))


@dataclass(frozen=True)
class Answer:
    rcode: str
    records: list[str]
    canonical_name: str | None = None


def read_answer(response: dns.message.Message) -> Answer:
    """The rcode and the records of the asked type, following a CNAME chain."""
    rcode = dns.rcode.to_text(response.rcode())
    if rcode != "NOERROR" or not isinstance(response, dns.message.QueryMessage):
        return Answer(rcode, [])
    chain = response.resolve_chaining()
    records = [] if chain.answer is None else sorted({answer_text(r) for r in chain.answer})
    canonical = name_text(chain.canonical_name)
    return Answer(rcode, records, canonical if chain.cnames else None)


def report(config: DnsConfig, answer: Answer, server: str, latency: float) -> Observation:
    asked = f"{config.name} {config.record_type}"
    records = answer.records
    if answer.rcode != "NOERROR":
        seen = answer.rcode
    elif records:
        more = len(records) - SHOWN_ANSWERS
        seen = ", ".join(records[:SHOWN_ANSWERS]) + (f" and {more} more" if more > 0 else "")
    else:
        seen = "no records"
    info: dict[str, Any] = {"resolver": server, "rcode": answer.rcode, "answers": records[:20]}
    if answer.canonical_name:
        info["canonical_name"] = answer.canonical_name
    problems = []
    if answer.rcode != config.rcode:
        problems.append(f"rcode {answer.rcode}, expected {config.rcode}")
    elif answer.rcode == "NOERROR" and not records and not config.expected:
        # A name monitored for its records should have at least one.
        problems.append(f"no {config.record_type} records for {config.name}")
    return Observation(
        problems=problems,
        values={"rcode": answer.rcode, "dns_answer": records},
        latency_ms=latency,
        summary=f"{asked}: {seen} in {latency:.0f} ms",
        info=info,
    )


def describe(exc: BaseException, resolver: Address, timeout: float | None) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return f"resolver {resolver} did not answer within {timeout or 0:g} s"
    if isinstance(exc, dns.message.ChainTooLong):
        return f"resolver {resolver} answered with a CNAME chain too long to follow"
    if isinstance(exc, dns.exception.DNSException):
        return f"resolver {resolver} sent an answer that cannot be read ({exc})"
    if isinstance(exc, EOFError):
        return f"resolver {resolver} closed the connection without answering"
    return describe_error(exc, resolver, "resolver")


PROBE = DnsProbe()
