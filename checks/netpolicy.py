"""Where probes may connect.

Monitoring private services is what a self-hosted monitor is for, so private
networks are allowed. Link-local and cloud metadata addresses (where a cloud
hands out credentials) and unspecified addresses are denied by default. The
check applies to the address actually connected to, after DNS, on every hop.
"""

from __future__ import annotations

import ipaddress
from functools import cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DeniedAddress(OSError):
    """A probe tried to connect to an address the policy denies."""


@cache
def _networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def is_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _networks(tuple(settings.PROBE_ALLOW_NETWORKS))):
        return True
    return not any(ip in net for net in _networks(tuple(settings.PROBE_DENY_NETWORKS)))


def check_address(address: str, host: str | None = None) -> None:
    if not is_allowed(address):
        shown = f"{host} ({address})" if host and host != address else address
        raise DeniedAddress(
            f"connecting to {shown} is not allowed (PROBE_DENY_NETWORKS); "
            "add it to PROBE_ALLOW_NETWORKS to probe it"
        )
