"""Where probes may connect.

Monitoring private services is what a self-hosted monitor is for, so private
networks are allowed. Link-local and cloud metadata addresses (where a cloud
hands out credentials) and unspecified addresses are denied by default. The
check applies to the address actually connected to, after DNS, on every hop.
"""

from __future__ import annotations

import ipaddress
from functools import cache, lru_cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DeniedAddress(OSError):
    """A probe tried to connect to an address the policy denies."""


@cache
def _networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def is_allowed(address: str) -> bool:
    allow, deny = settings.PROBE_ALLOW_NETWORKS, settings.PROBE_DENY_NETWORKS
    return _allowed(address, tuple(allow), tuple(deny))


# Every probe of a host checks its address again: parsing it each time was a
# tenth of an HTTP probe's CPU. Keyed on the networks too, so a changed
# setting (tests override it) never answers from an old verdict.
@lru_cache(maxsize=16384)
def _allowed(address: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _networks(allow)):
        return True
    return not any(ip in net for net in _networks(deny))


def allowed_addresses(host: str, addresses: list[str]) -> list[str]:
    """The addresses a name resolved to that the policy allows; none is an error.

    Every probe that connects resolves through this, so the address connected
    to is the one checked, on every connection and redirect hop.
    """
    allowed = [address for address in addresses if is_allowed(address)]
    if not allowed:
        shown = ", ".join(sorted(set(addresses)))
        who = f"{host} ({shown})" if shown != host else host
        raise DeniedAddress(
            f"connecting to {who} is not allowed (PROBE_DENY_NETWORKS); "
            "add it to PROBE_ALLOW_NETWORKS to probe it"
        )
    return allowed


def check_address(address: str, host: str | None = None) -> None:
    allowed_addresses(host or address, [address])
