"""Redis probe: is it reachable, how fast does PING answer, how full is its memory.

Memory use is `used_memory` against `maxmemory`. A Redis without a limit
(`maxmemory 0`) has no share to judge: the summary says so and no
`memory_pct` is set, so a memory rule the user asked for reads as missing.
The default 80 / 95 % thresholds apply to a server this monitor has seen with
a limit (remembered between runs), so an unlimited Redis is not red by default.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from checks.assertions import Rule
from checks.netpolicy import DeniedAddress
from checks.probes.base import Observation, OptionErrors, Options, Probe, ProbeSpec
from checks.probes.datastore import (
    ServerURL,
    below_rule,
    connect_first,
    first_line,
    parse_server_url,
    percent,
    thresholds,
)
from checks.probes.tcp import Address, latency_options, latency_rules
from checks.probes.tcp import describe_error as describe_network_error

KNOWN = {
    "memory_warning_pct", "memory_critical_pct", "clients_warning", "clients_critical",
    "verify_tls", "latency_warning_ms", "latency_critical_ms",
}  # fmt: skip
EXAMPLE = "redis://:secret@cache.internal:6379/0"
MEMORY_OPTIONS = ("memory_warning_pct", "memory_critical_pct")
MEMORY_DEFAULTS = (80.0, 95.0)


@dataclass(frozen=True)
class RedisConfig:
    server: ServerURL | None
    db: int = 0
    verify_tls: bool = True
    memory_warning_pct: float | None = MEMORY_DEFAULTS[0]
    memory_critical_pct: float | None = MEMORY_DEFAULTS[1]
    # Whether the user set a memory threshold (then it applies even with no limit).
    memory_chosen: bool = False
    clients_warning: int | None = None
    clients_critical: int | None = None
    latency_warning_ms: float | None = None
    latency_critical_ms: float | None = None

    @property
    def tls(self) -> bool:
        return self.server is not None and self.server.scheme == "rediss"


def parse(target: str, raw: Any, errors: OptionErrors) -> RedisConfig:
    server = parse_server_url(target, ("redis", "rediss"), 6379, EXAMPLE, errors)
    db = 0
    if server is not None:
        number = server.path.strip("/") or "0"
        if not number.isdigit() or int(number) > 100_000:
            errors.target(f"the database after the / must be a number, e.g. {EXAMPLE}")
        else:
            db = int(number)
        if server.query:
            errors.target("takes no ?parameters; set TLS checks with the verify_tls option")
    opts = Options(raw, KNOWN, errors)
    memory = thresholds(opts, MEMORY_OPTIONS, MEMORY_DEFAULTS, 100)
    clients = thresholds(
        opts, ("clients_warning", "clients_critical"), (None, None), 1_000_000, integer=True
    )
    latency_warning, latency_critical = latency_options(opts)
    return RedisConfig(
        server=server,
        db=db,
        verify_tls=opts.bool("verify_tls", True),
        memory_warning_pct=memory[0],
        memory_critical_pct=memory[1],
        memory_chosen=any(opts.raw.get(name) not in (None, "") for name in MEMORY_OPTIONS),
        clients_warning=clients[0],
        clients_critical=clients[1],
        latency_warning_ms=latency_warning,
        latency_critical_ms=latency_critical,
    )


class PinnedTLSConnection(SSLConnection):
    """TLS to the checked IP address, with the certificate checked against the host name.

    redis-py uses one `host` for both where to connect and whom to verify; the
    probe connects to an address, so the name for SNI and verification is
    passed on its own.
    """

    def __init__(self, *, server_hostname: str, **kwargs: Any) -> None:
        self.server_hostname = server_hostname
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Any:
        return {**super()._connection_arguments(), "server_hostname": self.server_hostname}


@dataclass
class Measured:
    latency_ms: float
    used_memory: int
    maxmemory: int
    policy: str
    clients: int


class RedisProbe(Probe):
    kind = "redis"

    parse = staticmethod(parse)

    def implicit_rules(self, spec: ProbeSpec) -> list[Rule]:
        config = parse(spec.target, spec.options, OptionErrors())
        rules = latency_rules(config.latency_warning_ms, config.latency_critical_ms)
        if config.memory_chosen or spec.memory.get("maxmemory"):
            rules += below_rule(
                "memory", "memory_pct", config.memory_warning_pct, config.memory_critical_pct
            )
        return rules + below_rule(
            "clients", "clients", config.clients_warning, config.clients_critical
        )

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        errors = OptionErrors()
        config = parse(spec.target, spec.options, errors)
        if errors.errors or config.server is None:
            return Observation.failed(f"invalid options: {errors.errors}")
        secrets = config.server.secrets
        started = time.perf_counter()
        try:
            seen, ip = await connect_first(
                config.server.address, lambda ip: measure(config, ip, spec.timeout), _unreachable
            )
        except Exception as exc:
            message = describe_error(exc, config.server.address)
            return Observation.failed(
                secrets.scrub(message), (time.perf_counter() - started) * 1000
            )
        values: dict[str, Any] = {"clients": seen.clients}
        used = _size(seen.used_memory)
        if seen.maxmemory:
            values["memory_pct"] = percent(seen.used_memory, seen.maxmemory)
            memory = f"memory {used} of {_size(seen.maxmemory)} ({values['memory_pct']:g}%)"
        else:
            memory = f"memory {used} (no maxmemory limit)"
        clients = f"{seen.clients} client{'s' if seen.clients != 1 else ''}"
        info: dict[str, Any] = {"used_memory": seen.used_memory, "maxmemory": seen.maxmemory}
        info["maxmemory_policy"] = secrets.scrub(seen.policy)
        if ip != config.server.host:
            info["address"] = ip
        return Observation(
            values=values,
            latency_ms=seen.latency_ms,
            summary=secrets.scrub(f"PING in {seen.latency_ms:.0f} ms, {memory}, {clients}"),
            info=info,
            memory={"maxmemory": seen.maxmemory},
        )


async def measure(config: RedisConfig, ip: str, timeout: float) -> Measured:
    pool = ConnectionPool(max_connections=1, **connection_options(config, ip, timeout))
    client = Redis.from_pool(pool)
    try:
        # Connect, log in and select the database first, so PING times only PING.
        await pool.release(await pool.get_connection())
        began = time.perf_counter()
        await client.ping()
        latency = (time.perf_counter() - began) * 1000
        memory = await client.info("memory")
        clients = await client.info("clients")
    finally:
        await client.aclose()
    return Measured(
        latency_ms=latency,
        used_memory=int(memory.get("used_memory", 0)),
        maxmemory=int(memory.get("maxmemory", 0)),
        policy=str(memory.get("maxmemory_policy", "")),
        clients=int(clients.get("connected_clients", 0)),
    )


def connection_options(config: RedisConfig, ip: str, timeout: float) -> dict[str, Any]:
    server = config.server
    assert server is not None
    options: dict[str, Any] = {
        "connection_class": Connection,
        "host": ip,
        "port": server.port,
        "db": config.db,
        "username": server.username,
        "password": server.password,
        # A safety net: the runner's deadline over the whole probe comes first.
        "socket_connect_timeout": timeout + 1,
        "socket_timeout": timeout + 1,
        # One attempt: a retry with backoff would outlast the probe's deadline
        # and turn "refused" into "timed out".
        "retry": Retry(NoBackoff(), 0),
        # RESP2 speaks to every Redis; RESP3 starts with HELLO, which Redis < 6 lacks.
        "protocol": 2,
    }
    if config.tls:
        options |= {
            "connection_class": PinnedTLSConnection,
            "server_hostname": server.host,
            "ssl_cert_reqs": "required" if config.verify_tls else "none",
            "ssl_check_hostname": config.verify_tls,
        }
    return options


def _size(count: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _cause(exc: BaseException) -> BaseException | None:
    return exc.__cause__ or exc.__context__


def _unreachable(exc: BaseException) -> bool:
    """A connection that never reached a Redis server (worth the next address)."""
    if isinstance(exc, redis_errors.AuthenticationError):
        return False
    cause = _cause(exc)
    return (
        isinstance(exc, redis_errors.ConnectionError)
        and isinstance(cause, OSError)
        and not isinstance(cause, ssl.SSLError)
    )


def describe_error(exc: BaseException, address: Address) -> str:
    """One readable line for what stopped a redis probe. The caller scrubs it."""
    if isinstance(exc, DeniedAddress | socket.gaierror):
        return describe_network_error(exc, address)
    said = first_line(exc).rstrip(".")
    if isinstance(exc, redis_errors.AuthenticationError):
        if "required" in said.lower():
            return f"{address} asks for a password and the URL has none"
        return f"cannot log in to {address}: {said}"
    if isinstance(exc, redis_errors.TimeoutError):
        return f"{address} did not answer in time"
    if isinstance(exc, redis_errors.ConnectionError):
        cause = _cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate rejected for {address.host}: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {address} failed: {cause.reason or cause}"
        if isinstance(cause, OSError):
            return describe_network_error(cause, address)
        return f"lost the connection to {address}: {said}"
    if isinstance(exc, redis_errors.NoPermissionError):
        return f"the user may not run PING and INFO on {address}: {said}"
    if isinstance(exc, redis_errors.ResponseError) and "DB index" in said:
        return f"cannot select the database on {address}: {said}"
    if isinstance(exc, redis_errors.ResponseError):
        return f"{address} answered with an error: {said}"
    return f"{type(exc).__name__}: {said}"


PROBE = RedisProbe()
