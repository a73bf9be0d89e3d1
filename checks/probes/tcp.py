"""TCP probe: can a connection to host:port be opened, and how fast.

The address helpers here (`parse_address`, `connect_first`, `describe_error`)
are shared by the probes that start with a TCP connection of their own (tls,
dns): they resolve the name first, drop the addresses the network policy
denies, and connect only to an address that was checked.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from checks import netpolicy
from checks.assertions import Rule
from checks.netpolicy import DeniedAddress
from checks.probes.base import Observation, OptionErrors, Options, Probe, ProbeSpec

KNOWN = {"latency_warning_ms", "latency_critical_ms"}
TARGET_HELP = "must be host:port, e.g. db.internal:5432 (an IPv6 address as [::1]:5432)"
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}

T = TypeVar("T")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_hostname(text: str) -> bool:
    """A name DNS can hold (letters, digits, `-`, `_`; international names too)."""
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(ascii_name.rstrip(".")) <= 253 and _HOSTNAME.fullmatch(ascii_name) is not None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_address(text: str, default_port: int | None = None) -> Address:
    """`host:port`, `[v6]:port`, or (with a default port) a bare host or address."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not is_ip(host) or ":" not in host:
            raise ValueError("an address in brackets must be IPv6, e.g. [::1]:5432")
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise ValueError(f"unexpected {rest!r} after the address")
    elif default_port is not None and text.count(":") > 1 and is_ip(text):
        host, port_text = text, None  # a bare IPv6 address
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, None
        if ":" in host:
            raise ValueError("write an IPv6 address in brackets, e.g. [::1]:5432")
        if not host or not (is_ip(host) or is_hostname(host)):
            raise ValueError(f"{host!r} is not a host name or IP address")
    if port_text is None or port_text == "":
        if default_port is None:
            raise ValueError("the port is missing")
        return Address(host, default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, got {port_text!r}")
    return Address(host, int(port_text))


async def allowed_addresses(address: Address) -> list[str]:
    """The addresses `address.host` resolves to that the network policy allows."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    found = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return netpolicy.allowed_addresses(address.host, found)


async def connect_first(address: Address, attempt: Callable[[str], Awaitable[T]]) -> T:
    """Run `attempt(ip)` on each allowed address in turn; the first that connects wins.

    A TLS error is the server's answer rather than a failure to reach it, so it
    is not retried on the next address.
    """
    failure: OSError | None = None
    for ip in await allowed_addresses(address):
        try:
            return await attempt(ip)
        except ssl.SSLError:
            raise
        except OSError as exc:
            failure = exc
    assert failure is not None
    raise failure


async def open_and_close(ip: str, port: int) -> str:
    _reader, writer = await asyncio.open_connection(ip, port)
    await close_quietly(writer)
    return ip


async def close_quietly(writer: asyncio.StreamWriter, grace: float = 0.5) -> None:
    """Close politely (TLS sends close_notify), but never wait long for the peer."""
    writer.close()
    try:
        async with asyncio.timeout(grace):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()


def describe_error(exc: BaseException, address: Address, what: str = "") -> str:
    """One readable sentence for what stopped a connection to `address`."""
    where = f"{what} {address}".strip()
    if isinstance(exc, DeniedAddress):
        return str(exc)
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed for {address.host} ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, ConnectionResetError):
        return f"connection reset by {where}"
    if isinstance(exc, TimeoutError) or getattr(exc, "errno", None) == errno.ETIMEDOUT:
        return f"connecting to {where} timed out"
    if isinstance(exc, OSError) and exc.errno in UNREACHABLE:
        return f"{where} is unreachable ({(exc.strerror or str(exc)).lower()})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect to {where}: {exc.strerror}"
    return f"cannot connect to {where}: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class TcpConfig:
    address: Address | None
    latency_warning_ms: float | None = None
    latency_critical_ms: float | None = None


def parse(target: str, raw: Any, errors: OptionErrors) -> TcpConfig:
    address = None
    try:
        address = parse_address(target)
    except ValueError as exc:
        errors.target(f"{TARGET_HELP}: {exc}")
    opts = Options(raw, KNOWN, errors)
    warning, critical = latency_options(opts)
    return TcpConfig(address, warning, critical)


def latency_options(opts: Options) -> tuple[float | None, float | None]:
    warning = opts.number("latency_warning_ms", None, 1, 600_000)
    critical = opts.number("latency_critical_ms", None, 1, 600_000)
    if warning and critical and warning >= critical:
        opts.errors.option("latency_warning_ms", "must be below latency_critical_ms")
    return warning, critical


def latency_rules(warning: float | None, critical: float | None) -> list[Rule]:
    if not (warning or critical):
        return []
    shown = ["" if value is None else f"{value:g}" for value in (warning, critical)]
    return [Rule("latency", "latency", "lt", critical=shown[1], warning=shown[0])]


class TcpProbe(Probe):
    kind = "tcp"

    parse = staticmethod(parse)

    def implicit_rules(self, spec: ProbeSpec) -> list[Rule]:
        config = parse(spec.target, spec.options, OptionErrors())
        return latency_rules(config.latency_warning_ms, config.latency_critical_ms)

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        errors = OptionErrors()
        config = parse(spec.target, spec.options, errors)
        if errors.errors or config.address is None:
            return Observation.failed(f"invalid options: {errors.errors}")
        address = config.address
        started = time.perf_counter()
        try:
            ip = await connect_first(address, lambda ip: open_and_close(ip, address.port))
        except OSError as exc:
            return Observation.failed(
                describe_error(exc, address), (time.perf_counter() - started) * 1000
            )
        latency = (time.perf_counter() - started) * 1000
        return Observation(
            latency_ms=latency,
            summary=f"connected to {address} in {latency:.0f} ms",
            info={"address": ip} if ip != address.host else {},
        )


PROBE = TcpProbe()
