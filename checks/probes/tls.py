"""TLS certificate probe: days until expiry, issuer, chain and hostname.

A verifying handshake decides whether the chain is trusted and the name
matches. When it fails, a second handshake that verifies nothing reads the
certificate anyway, so the result still says when it expires and who issued
it next to why it is not trusted.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from checks.assertions import Rule
from checks.probes.base import Observation, OptionErrors, Options, Probe, ProbeSpec
from checks.probes.tcp import (
    Address,
    close_quietly,
    connect_first,
    describe_error,
    is_hostname,
    is_ip,
)
from checks.probes.tcp import parse_address as parse_host_port

KNOWN = {"server_name", "ca_cert", "warning_days", "critical_days"}
TARGET_HELP = "must be host or host:port, e.g. api.example.com:443 (IPv6 as [::1]:443)"
# OpenSSL's verify codes (X509_V_ERR_*) that the probe words itself.
CERT_HAS_EXPIRED = 10
NAME_MISMATCH = {62, 63, 64}  # host name, e-mail, IP address
PLAIN_REASONS = {
    2: "issuer certificate not found (is an intermediate certificate missing?)",
    18: "self-signed certificate",
    19: "self-signed certificate in chain",
    20: "unknown issuer (an intermediate certificate is missing, or the CA is private: "
    "set ca_cert)",
    21: "unable to verify the first certificate (is an intermediate certificate missing?)",
}
# OpenSSL's reasons for a failed handshake, where its own words are unclear.
HANDSHAKE_REASONS = {
    "WRONG_VERSION_NUMBER": "the server does not speak TLS on this port",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common",
}


@dataclass(frozen=True)
class TlsConfig:
    address: Address | None
    server_name: str
    ca_cert: str | None = None
    warning_days: int = 14
    critical_days: int = 7


def parse(target: str, raw: Any, errors: OptionErrors) -> TlsConfig:
    address = None
    try:
        address = parse_host_port(target, default_port=443)
    except ValueError as exc:
        errors.target(f"{TARGET_HELP}: {exc}")
    opts = Options(raw, KNOWN, errors)
    server_name = opts.str("server_name")
    if server_name and not (is_hostname(server_name) or is_ip(server_name)):
        errors.option("server_name", f"must be a host name, got {server_name!r}")
    ca_cert = opts.str("ca_cert")
    if ca_cert:
        try:
            verifying_context(ca_cert)
        except (ssl.SSLError, ValueError):
            errors.option(
                "ca_cert", "must be the CA's certificate in PEM (-----BEGIN CERTIFICATE-----...)"
            )
    warning = opts.number("warning_days", 14, 0, 3650, integer=True)
    critical = opts.number("critical_days", 7, 0, 3650, integer=True)
    if warning < critical:
        errors.option("warning_days", f"must not be below critical_days ({critical})")
    return TlsConfig(
        address=address,
        server_name=server_name or (address.host if address else ""),
        ca_cert=ca_cert,
        warning_days=warning,
        critical_days=critical,
    )


@lru_cache(maxsize=64)
def verifying_context(ca_cert: str | None) -> ssl.SSLContext:
    """The system's trust store, plus the monitor's private CA when it has one."""
    context = ssl.create_default_context()
    if ca_cert:
        context.load_verify_locations(cadata=ca_cert)
    return context


@cache
def inspecting_context() -> ssl.SSLContext:
    """Verifies nothing: used only to read a certificate already found untrusted."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class Handshake:
    ip: str
    der: bytes
    version: str
    failure: ssl.SSLCertVerificationError | None = None


async def read_certificate(
    ip: str, port: int, context: ssl.SSLContext, server_name: str
) -> tuple[bytes, str]:
    _reader, writer = await asyncio.open_connection(
        ip, port, ssl=context, server_hostname=server_name
    )
    try:
        tls = writer.get_extra_info("ssl_object")
        return tls.getpeercert(binary_form=True) or b"", tls.version() or ""
    finally:
        await close_quietly(writer)


async def handshake(config: TlsConfig, ip: str) -> Handshake:
    assert config.address is not None
    port, name = config.address.port, config.server_name
    try:
        der, version = await read_certificate(ip, port, verifying_context(config.ca_cert), name)
        return Handshake(ip, der, version)
    except ssl.SSLCertVerificationError as failure:
        der, version = await read_certificate(ip, port, inspecting_context(), name)
        return Handshake(ip, der, version, failure)


def days_left(not_after: datetime, now: datetime) -> int:
    """Whole days until expiry; after it, minus the whole days since (at least 1)."""
    seconds = (not_after - now).total_seconds()
    if seconds >= 0:
        return math.floor(seconds / 86400)
    return -max(1, math.floor(-seconds / 86400))


def name_of(name: x509.Name) -> str:
    """An issuer as people name it: the organisation, else the common name."""
    for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        found = name.get_attributes_for_oid(oid)
        if found:
            return str(found[0].value)
    return name.rfc4514_string() or "an unnamed issuer"


def names_in(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(common[0].value)] if common else []
    return [*san.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


def problem_with(seen: Handshake, cert: x509.Certificate, config: TlsConfig, days: int) -> str:
    """Why the verifying handshake failed, in one sentence ("" when the days say it)."""
    failure = seen.failure
    if failure is None:
        return ""
    if failure.verify_code in NAME_MISMATCH:
        names = names_in(cert)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"certificate is for {shown or 'no name'}, not {config.server_name}"
    if failure.verify_code == CERT_HAS_EXPIRED and days < 0:
        return ""  # the leaf itself expired: the cert_days rule words it
    reason = PLAIN_REASONS.get(failure.verify_code) or (
        failure.verify_message or str(failure)
    ).rstrip(".")
    return f"certificate not trusted: {reason}"


class TlsProbe(Probe):
    kind = "tls"

    parse = staticmethod(parse)

    def implicit_rules(self, spec: ProbeSpec) -> list[Rule]:
        config = parse(spec.target, spec.options, OptionErrors())
        return [
            Rule(
                "cert_days",
                "cert_days",
                "ge",
                critical=str(config.critical_days),
                warning=str(config.warning_days),
            )
        ]

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        errors = OptionErrors()
        config = parse(spec.target, spec.options, errors)
        if errors.errors or config.address is None:
            return Observation.failed(f"invalid options: {errors.errors}")
        address = config.address
        started = time.perf_counter()
        try:
            seen = await connect_first(address, lambda ip: handshake(config, ip))
        except ssl.SSLError as exc:
            code = exc.reason or ""
            reason = HANDSHAKE_REASONS.get(code) or code.replace("_", " ").lower() or str(exc)
            return Observation.failed(
                f"TLS handshake with {address} failed: {reason}",
                (time.perf_counter() - started) * 1000,
            )
        except OSError as exc:
            return Observation.failed(
                describe_error(exc, address), (time.perf_counter() - started) * 1000
            )
        latency = (time.perf_counter() - started) * 1000
        return self.report(config, seen, latency)

    def report(self, config: TlsConfig, seen: Handshake, latency: float) -> Observation:
        try:
            cert = x509.load_der_x509_certificate(seen.der)
        except ValueError as exc:
            return Observation.failed(f"the server's certificate cannot be read ({exc})", latency)
        expires = cert.not_valid_after_utc
        days = days_left(expires, datetime.now(UTC))
        issuer = name_of(cert.issuer)
        if days >= 0:
            summary = f"certificate valid for {days} days, issued by {issuer}"
        else:
            summary = f"certificate expired {-days} days ago, issued by {issuer}"
        info = {
            "issuer": issuer,
            "issuer_dn": cert.issuer.rfc4514_string(),
            "subject": cert.subject.rfc4514_string(),
            "names": names_in(cert)[:20],
            "not_after": expires.isoformat(),
            "days_left": days,
            "tls_version": seen.version,
            "address": seen.ip,
        }
        problem = problem_with(seen, cert, config, days)
        return Observation(
            values={"cert_days": days},
            latency_ms=latency,
            # An untrusted chain or a wrong name is critical, in its own words;
            # the days left are still judged and shown.
            problems=[problem] if problem else [],
            summary=summary,
            info=info,
        )


PROBE = TlsProbe()
