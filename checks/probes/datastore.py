"""What the postgres and redis probes share.

Both take a URL that may carry a password, connect only to addresses the
network policy allows, and turn warning / critical options into "value <
threshold" rules. The password must never reach a reason, summary, info or
error: nothing they write quotes the target, and every text they return
passes through `Secrets.scrub` in case a library quoted it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from yarl import URL

from checks.assertions import Rule
from checks.probes.base import OptionErrors, Options
from checks.probes.tcp import Address, allowed_addresses, is_hostname, is_ip

T = TypeVar("T")
MASK = "***"


@dataclass(frozen=True)
class Secrets:
    """Texts that must not be shown, as typed and as they appear in the URL."""

    words: tuple[str, ...] = ()

    def scrub(self, text: str) -> str:
        # Longest first, so an encoded form is masked whole, not half.
        for word in sorted(self.words, key=len, reverse=True):
            text = text.replace(word, MASK)
        return text


@dataclass(frozen=True)
class ServerURL:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    path: str
    query: dict[str, str] = field(default_factory=dict)
    raw_password: str | None = None

    @property
    def address(self) -> Address:
        return Address(self.host, self.port)

    @property
    def secrets(self) -> Secrets:
        return Secrets(tuple({w for w in (self.password, self.raw_password) if w}))


def parse_server_url(
    target: str, schemes: tuple[str, ...], default_port: int, example: str, errors: OptionErrors
) -> ServerURL | None:
    """Read `scheme://[user[:password]@]host[:port]/path?query`; None (with errors) if bad.

    No message here repeats the target: it may hold a password.
    """
    wanted = " or ".join(f"{scheme}://" for scheme in schemes)
    help_text = f"must be a {wanted} URL with a host, e.g. {example}"
    try:
        url = URL(target)
        port = url.explicit_port
    except (TypeError, ValueError) as exc:
        # yarl's message is not shown: it may quote the URL, password and all.
        port_problem = "port" in str(exc).lower()
        errors.target("the port must be a number from 1 to 65535" if port_problem else help_text)
        return None
    if url.scheme not in schemes or not url.host:
        errors.target(help_text)
        return None
    host = url.host
    if not (is_ip(host) or is_hostname(host)):
        errors.target(f"{host!r} is not a host name or IP address (one host only)")
        return None
    if port is not None and not 1 <= port <= 65535:
        errors.target("the port must be a number from 1 to 65535")
        return None
    if url.fragment:
        errors.target("must not have a #fragment")
    return ServerURL(
        scheme=url.scheme,
        host=host,
        port=port or default_port,
        username=url.user or None,
        password=url.password or None,
        path=url.path,
        query=dict(url.query),
        raw_password=url.raw_password or None,
    )


async def connect_first(
    address: Address,
    attempt: Callable[[str], Awaitable[T]],
    unreachable: Callable[[BaseException], bool],
) -> tuple[T, str]:
    """Run `attempt(ip)` on each address the policy allows until one is reached.

    `allowed_addresses` resolves the name once and checks every address, and
    `attempt` connects to the checked address itself, never to the name, so no
    second lookup can swap it. Only a failure to reach the server moves on to
    the next address; anything the server answered (a refused login) is final.
    """
    failure: BaseException | None = None
    for ip in await allowed_addresses(address):
        try:
            return await attempt(ip), ip
        except Exception as exc:
            if not unreachable(exc):
                raise
            failure = exc
    assert failure is not None
    raise failure


def thresholds(
    opts: Options,
    names: tuple[str, str],
    defaults: tuple[float | None, float | None],
    high: float,
    integer: bool = False,
) -> tuple[float | None, float | None]:
    """A warning and a critical option of a "value < threshold" expectation."""
    warning = opts.number(names[0], defaults[0], 0, high, integer)
    critical = opts.number(names[1], defaults[1], 0, high, integer)
    if warning is not None and critical is not None and warning >= critical:
        by_default = "" if names[1] in opts.raw else f" ({critical:g} unless set)"
        opts.errors.option(names[0], f"must be below {names[1]}{by_default}")
    return warning, critical


def below_rule(key: str, source: str, warning: float | None, critical: float | None) -> list[Rule]:
    """Healthy while the value stays below the thresholds: `connection_pct < 80`."""
    if warning is None and critical is None:
        return []
    shown = ["" if value is None else f"{value:g}" for value in (warning, critical)]
    return [Rule(key, source, "lt", critical=shown[1], warning=shown[0])]


def percent(part: float, whole: float) -> float:
    """A share in percent, to one decimal: what rules read and summaries show."""
    return round(part / whole * 100, 1)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__
