"""PostgreSQL probe: can we log in, how fast does `SELECT 1` answer, how full is the pool.

Connection usage is the client sessions in pg_stat_activity against
`max_connections` (or the `pool_size` option), the number teams watch as "DB
connections < 80% of pool". An optional read-only query yields one value to
judge, e.g. the age of the oldest queued job.

The monitoring role needs no rights to write; granting it `pg_monitor` lets it
see other users' sessions in full (without it, hidden sessions are counted when
they belong to a database, which may count a few background workers too).
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as clock
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from checks.assertions import Rule, to_number
from checks.models import Assertion
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
    "connections_warning_pct", "connections_critical_pct", "pool_size",
    "query", "query_operator", "query_warning", "query_critical",
    "latency_warning_ms", "latency_critical_ms",
}  # fmt: skip
EXAMPLE = "postgres://watchpost:secret@db.internal:5432/app"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Other DSN parameters (service, passfile, sslkey...) would read files or
# settings of the worker; a monitor's target must not reach those.
DSN_PARAMETERS = ("application_name", "sslmode")
OPERATORS = tuple(Assertion.Operator.values)
ORDERED = ("lt", "le", "gt", "ge")
QUERY_START = re.compile(r"\s*(select|with)\b", re.IGNORECASE)
# libpq falls back to ~/.pgpass (or PGPASSFILE) when a DSN has no password. A
# monitor must never send the worker's own credentials to the host it names,
# so it is pointed at a password file that cannot exist.
NO_PASSFILE = "/nonexistent/watchpost/pgpass"
CONNECTIONS_SQL = """
SELECT count(*) FILTER (
           WHERE backend_type = 'client backend'
              -- Without pg_read_all_stats, other roles' sessions show no backend_type;
              -- a session attached to a database is counted as a client.
              OR (backend_type IS NULL AND datid IS NOT NULL)
       ),
       current_setting('max_connections')::int
FROM pg_stat_activity
"""


@dataclass(frozen=True)
class PostgresConfig:
    server: ServerURL | None
    database: str = ""
    sslmode: str = "prefer"
    application_name: str = "watchpost"
    connections_warning_pct: float | None = 80
    connections_critical_pct: float | None = 95
    pool_size: int | None = None
    query: str | None = None
    query_operator: str = "lt"
    query_warning: str = ""
    query_critical: str = ""
    latency_warning_ms: float | None = None
    latency_critical_ms: float | None = None


def parse(target: str, raw: Any, errors: OptionErrors) -> PostgresConfig:
    server = parse_server_url(target, ("postgres", "postgresql"), 5432, EXAMPLE, errors)
    if server is not None:
        if not server.username:
            errors.target(f"name the user to log in as, e.g. {EXAMPLE}")
        for name in sorted(set(server.query) - set(DSN_PARAMETERS)):
            errors.target(
                f"unsupported DSN parameter {name!r} (supported: {', '.join(DSN_PARAMETERS)})"
            )
        if server.query.get("sslmode", "prefer") not in SSLMODES:
            errors.target(f"sslmode must be one of {', '.join(SSLMODES)}")
    opts = Options(raw, KNOWN, errors)
    warning, critical = thresholds(
        opts, ("connections_warning_pct", "connections_critical_pct"), (80, 95), 100
    )
    query = opts.str("query")
    if query and not QUERY_START.match(query):
        errors.option("query", "must be one SELECT statement (or WITH ... SELECT)")
    operator = opts.str("query_operator", "lt", OPERATORS)
    query_warning = _expected(opts, "query_warning", operator)
    query_critical = _expected(opts, "query_critical", operator)
    if (query_warning or query_critical) and not query:
        errors.option("query", "is needed for query_warning and query_critical")
    _check_order(errors, operator, query_warning, query_critical)
    latency_warning, latency_critical = latency_options(opts)
    return PostgresConfig(
        server=server,
        database=(server.path.strip("/") or server.username or "") if server else "",
        sslmode=server.query.get("sslmode", "prefer") if server else "prefer",
        application_name=server.query.get("application_name", "watchpost") if server else "",
        connections_warning_pct=warning,
        connections_critical_pct=critical,
        pool_size=opts.number("pool_size", None, 1, 1_000_000, integer=True),
        query=query,
        query_operator=operator,
        query_warning=query_warning,
        query_critical=query_critical,
        latency_warning_ms=latency_warning,
        latency_critical_ms=latency_critical,
    )


def _expected(opts: Options, name: str, operator: str) -> str:
    """A query threshold as the rules hold it: text, a number for <, ≤, >, ≥."""
    value = opts.raw.get(name)
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        opts.errors.option(name, "must be a number or a text")
        return ""
    shown = value if isinstance(value, str) else f"{value:g}"
    if operator in ORDERED and to_number(shown) is None:
        opts.errors.option(name, f"must be a number for query_operator {operator}, got {value!r}")
        return ""
    return shown


def _check_order(errors: OptionErrors, operator: str, warning: str, critical: str) -> None:
    low, high = to_number(warning), to_number(critical)
    if operator not in ORDERED or low is None or high is None:
        return
    if operator in ("lt", "le") and low >= high:
        errors.option("query_warning", f"must be below query_critical for {operator}")
    if operator in ("gt", "ge") and low <= high:
        errors.option("query_warning", f"must be above query_critical for {operator}")


class QueryFailed(Exception):
    """A statement failed after logging in; the message is ready to show."""


@dataclass
class Measured:
    latency_ms: float
    clients: int
    max_connections: int
    server_version: str
    query_value: Any = None
    query_rows: bool = False


class PostgresProbe(Probe):
    kind = "postgres"
    target_label = "DSN"

    parse = staticmethod(parse)

    def implicit_rules(self, spec: ProbeSpec) -> list[Rule]:
        config = parse(spec.target, spec.options, OptionErrors())
        rules = below_rule(
            "connections",
            "connection_pct",
            config.connections_warning_pct,
            config.connections_critical_pct,
        )
        if config.query and (config.query_warning or config.query_critical):
            rules.append(
                Rule(
                    "query",
                    "query_value",
                    config.query_operator,
                    critical=config.query_critical,
                    warning=config.query_warning,
                )
            )
        return rules + latency_rules(config.latency_warning_ms, config.latency_critical_ms)

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        errors = OptionErrors()
        config = parse(spec.target, spec.options, errors)
        if errors.errors or config.server is None:
            return Observation.failed(f"invalid options: {errors.errors}")
        secrets = config.server.secrets
        started = time.perf_counter()
        try:
            seen, ip = await self.measure(config, spec.timeout, started)
        except Exception as exc:
            message = describe_error(exc, config.server.address)
            return Observation.failed(
                secrets.scrub(message), (time.perf_counter() - started) * 1000
            )
        pool = config.pool_size or seen.max_connections
        pct = percent(seen.clients, pool)
        values: dict[str, Any] = {"clients": seen.clients, "connection_pct": pct}
        summary = (
            f"SELECT 1 in {seen.latency_ms:.0f} ms, {seen.clients} of {pool} connections ({pct:g}%)"
        )
        if config.query and seen.query_rows:
            value = seen.query_value
            values["query_value"] = secrets.scrub(value) if isinstance(value, str) else value
            summary += f", query value {_shown(values['query_value'])}"
        elif config.query:
            summary += ", the query returned no rows"
        info = {"max_connections": seen.max_connections, "server_version": seen.server_version}
        if ip != config.server.host:
            info["address"] = ip
        return Observation(
            values=values,
            latency_ms=seen.latency_ms,
            summary=secrets.scrub(summary),
            info={k: secrets.scrub(v) if isinstance(v, str) else v for k, v in info.items()},
        )

    async def measure(
        self, config: PostgresConfig, timeout: float, started: float
    ) -> tuple[Measured, str]:
        assert config.server is not None
        conn, ip = await connect_first(
            config.server.address, lambda ip: connect(config, ip, timeout), _unreachable
        )
        try:
            began = time.perf_counter()
            await conn.execute("SELECT 1")
            latency = (time.perf_counter() - began) * 1000
            cursor = await conn.execute(CONNECTIONS_SQL)
            clients, max_connections = await cursor.fetchone() or (0, 0)
            version = conn.info.parameter_status("server_version") or ""
            seen = Measured(latency, clients, max_connections, version.split(" ")[0])
            if config.query:
                left_ms = (timeout - (time.perf_counter() - started)) * 1000
                seen.query_rows, seen.query_value = await run_query(conn, config.query, left_ms)
        finally:
            await conn.close()
        return seen, ip


async def connect(config: PostgresConfig, ip: str, timeout: float) -> psycopg.AsyncConnection:
    server = config.server
    assert server is not None
    return await psycopg.AsyncConnection.connect(
        # host names the server for TLS verification; hostaddr is where we
        # connect: the address the network policy checked.
        host=server.host,
        hostaddr=ip,
        port=server.port,
        user=server.username,
        password=server.password or "",
        passfile=NO_PASSFILE,
        dbname=config.database,
        sslmode=config.sslmode,
        application_name=config.application_name,
        # libpq's minimum is 2 s; the runner's deadline over the whole probe is the real one.
        connect_timeout=max(2, round(timeout)),
        autocommit=True,
    )


async def run_query(conn: psycopg.AsyncConnection, query: str, left_ms: float) -> tuple[bool, Any]:
    """The first value of the first row of `query`, run read-only; (False, None) if no rows."""
    # The server stops the query a little before the probe's deadline, so the
    # reason says the query was slow rather than just "timed out".
    limit_ms = max(100, int(left_ms * 0.8))
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute("SET TRANSACTION READ ONLY")
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, true)", [f"{limit_ms}ms"]
            )
            # Binary results use the extended protocol, which takes exactly one
            # statement: `SELECT 1; SET TRANSACTION READ WRITE; ...` is refused.
            cursor = await conn.execute(query, binary=True)
            row = await cursor.fetchone()
    except pg_errors.QueryCanceled as exc:
        raise QueryFailed(f"the query was stopped after {limit_ms} ms (statement_timeout)") from exc
    except pg_errors.ReadOnlySqlTransaction as exc:
        raise QueryFailed("the query tried to write; queries run read-only") from exc
    except pg_errors.SyntaxError as exc:
        if "multiple commands" in str(exc):
            raise QueryFailed("the query must be a single statement") from exc
        raise QueryFailed(f"the query failed: {_primary(exc)}") from exc
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
            raise  # the connection itself broke
        raise QueryFailed(f"the query failed: {_primary(exc)}") from exc
    if not row:
        return False, None
    return True, _plain(row[0])


def _plain(value: Any) -> Any:
    """A query's value as JSON holds it, so rules compare it and results store it."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | clock):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "NULL"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _primary(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc).strip().splitlines()[0]


# libpq's words for a socket that never reached a server.
UNREACHED = (
    "Connection refused", "No route to host", "Network is unreachable", "Connection timed out",
    "timeout expired",
)  # fmt: skip


def _unreachable(exc: BaseException) -> bool:
    """A connection attempt that never reached a PostgreSQL server (worth the next address)."""
    return isinstance(exc, psycopg.OperationalError) and any(w in str(exc) for w in UNREACHED)


def _fatal(text: str) -> str | None:
    """What the server said when it refused the login (`database "x" does not exist`)."""
    found = re.search(r"FATAL:\s+(.*)", text)
    return found.group(1).strip() if found else None


def describe_error(exc: BaseException, address: Address) -> str:
    """One readable line for what stopped a postgres probe. The caller scrubs it."""
    if isinstance(exc, QueryFailed):
        return str(exc)
    if isinstance(exc, DeniedAddress | socket.gaierror):
        return describe_network_error(exc, address)
    if not isinstance(exc, psycopg.OperationalError):
        return f"{type(exc).__name__}: {first_line(exc)}"
    text = str(exc)
    fatal = _fatal(text)
    if fatal:
        return f"cannot log in to {address}: {fatal}"
    if "no password supplied" in text:
        return f"{address} asks for a password and the DSN has none"
    if "Connection refused" in text:
        return f"connection refused by {address}"
    if "timeout expired" in text:
        return f"connecting to {address} timed out"
    # libpq: 'connection failed: connection to server at "ip", port 5432 failed: <why>'
    why = text.rsplit(" failed: ", 1)[-1].strip().splitlines()[0]
    return f"cannot connect to {address}: {why}"


PROBE = PostgresProbe()
