"""The one way transports POST to the outside world: guarded, bounded, quiet about secrets.

The address policy is applied to the address actually connected to: the host
is resolved here, every address it resolves to is checked, and the connection
goes to a checked address without resolving again, so a DNS answer that
changes between check and connect (rebinding) cannot steer a notification to
an internal service.

Errors name the service and host, never the URL: webhook URLs and bot tokens
are secrets, and errors end up in the admin and the logs.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from alerts.transports.base import (
    ConfigCheck,
    Destination,
    Message,
    Transport,
    TransportError,
    one_line,
    shorten,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

USER_AGENT = "Watchpost notifications"
# An answer is read up to this size: enough for any service's error message.
BODY_LIMIT = 64 * 1024
DETAIL_SHOWN = 200
# Answers meaning the destination is gone or refuses us: retrying cannot help.
PERMANENT_STATUSES = frozenset({401, 403, 404, 410})
# Never a notification destination, even with NOTIFY_ALLOW_PRIVATE: link-local
# (cloud metadata at 169.254.169.254 hands out credentials), AWS's IPv6
# metadata address, and "this network".
ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(net) for net in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128",
                                          "0.0.0.0/8", "::/128")
)  # fmt: skip


@dataclass(frozen=True)
class Response:
    """A service's answer, of any status."""

    service: str
    status: int
    body: bytes
    secrets: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def detail(self) -> str:
        """The start of the answer's body on one line, with any secret blanked out."""
        text = one_line(self.body.decode("utf-8", "replace"))
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return shorten(text, DETAIL_SHOWN)

    def error(self, permanent: bool | None = None) -> TransportError:
        if permanent is None:
            permanent = self.status in PERMANENT_STATUSES
        detail = self.detail()
        message = f"{self.service} answered HTTP {self.status}" + (f": {detail}" if detail else "")
        return TransportError(message, permanent=permanent)

    def raise_for_status(self, permanent: frozenset[int] = PERMANENT_STATUSES) -> None:
        """`permanent` statuses fail for good; 429, 5xx and the rest may pass on retry."""
        if not self.ok:
            raise self.error(self.status in permanent)


def refusal(ip: IPAddress) -> str:
    """Why notifications may not go to this address ('' when they may)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in ALWAYS_REFUSED):
        return "a link-local, metadata or unspecified address, never allowed"
    if ip.is_multicast:
        return "a multicast address, never allowed"
    if settings.NOTIFY_ALLOW_PRIVATE:
        return ""
    if ip.is_loopback:
        kind = "a loopback address"
    elif ip.is_private:
        kind = "a private address"
    elif not ip.is_global:
        kind = "a reserved address"
    else:
        return ""
    return f"{kind}; set NOTIFY_ALLOW_PRIVATE to send to your own network"


def resolve(host: str, port: int, service: str) -> list[str]:
    """Every address of the host, each checked: one refused address refuses the host."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TransportError(f"{service}: could not resolve {host} ({exc})") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        why = refusal(ipaddress.ip_address(address.split("%")[0]))
        if why:
            shown = host if host == address else f"{host} ({address})"
            raise TransportError(f"{service}: refused to connect to {shown}: {why}", permanent=True)
    return addresses


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    host_header: str
    path: str
    auth: tuple[str, str] | None


def parse(url: str, service: str) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TransportError(f"{service}: the URL is not valid", permanent=True) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(f"{service}: the URL must be http:// or https://", permanent=True)
    default = 443 if parts.scheme == "https" else 80
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username), unquote(parts.password or ""))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or default,
        host_header=parts.netloc.rpartition("@")[2],
        path=path,
        auth=auth,
    )


def connection_pool(target: Target, address: str, timeout: float) -> urllib3.HTTPConnectionPool:
    options: dict[str, Any] = {
        "timeout": urllib3.Timeout(total=timeout),
        "retries": False,
        "maxsize": 1,
    }
    if target.scheme == "https":
        # Connected by address; the certificate is still checked against the host name.
        return urllib3.HTTPSConnectionPool(
            address, target.port, server_hostname=target.host, assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED", **options,
        )  # fmt: skip
    return urllib3.HTTPConnectionPool(address, target.port, **options)


def failure(exc: Exception, host: str, service: str, timeout: float) -> TransportError:
    """A connection problem in words, without the URL urllib3 puts in its messages."""
    if isinstance(exc, NewConnectionError):
        cause = exc.__cause__
        why = getattr(cause, "strerror", None) or type(cause or exc).__name__
        return TransportError(f"{service}: could not connect to {host} ({why})")
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
        return TransportError(f"{service}: {host} did not answer within {timeout:g} s")
    if isinstance(exc, SSLError):
        return TransportError(f"{service}: TLS with {host} failed ({shorten(str(exc), 160)})")
    if isinstance(exc, ProtocolError):
        return TransportError(f"{service}: {host} closed the connection ({type(exc).__name__})")
    return TransportError(f"{service}: request to {host} failed ({type(exc).__name__})")


def post(
    url: str,
    body: bytes,
    *,
    service: str,
    content_type: str,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> Response:
    """POST to a checked address of the URL's host; return the answer whatever its status.

    Redirects are not followed (a webhook that moved is an error to fix, and a
    redirect could point anywhere). `secrets` are blanked out of error details.
    """
    target = parse(url, service)
    timeout = float(settings.NOTIFY_TIMEOUT)
    auth = auth or target.auth
    sent = {"Host": target.host_header, "Content-Type": content_type, "User-Agent": USER_AGENT}
    sent.update(headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        sent["Authorization"] = f"Basic {token}"
    addresses = resolve(target.host, target.port, service)
    for number, address in enumerate(addresses, start=1):
        pool = connection_pool(target, address, timeout)
        try:
            answer = pool.urlopen(
                "POST", target.path, body=body, headers=sent, redirect=False,
                preload_content=False, assert_same_host=False,
            )  # fmt: skip
            data = answer.read(BODY_LIMIT)
            answer.release_conn()
            return Response(service, answer.status, data, secrets)
        except (NewConnectionError, ConnectTimeoutError) as exc:
            # Nothing was sent: the next address of the host may work.
            if number == len(addresses):
                raise failure(exc, target.host, service, timeout) from None
        except (HTTPError, OSError) as exc:
            raise failure(exc, target.host, service, timeout) from None
        finally:
            pool.close()
    raise TransportError(f"{service}: {target.host} has no address")


def post_json(
    url: str,
    payload: Any,
    *,
    service: str,
    headers: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (),
    permanent: frozenset[int] = PERMANENT_STATUSES,
) -> Response:
    """POST a JSON document; raise TransportError unless the answer is a success."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    response = post(
        url, body, service=service, content_type="application/json", headers=headers,
        secrets=secrets,
    )  # fmt: skip
    response.raise_for_status(permanent)
    return response


class JsonWebhookTransport(Transport):
    """A chat service whose channel is one incoming-webhook URL taking a JSON payload.

    Subclasses name the service and build the payload; the URL is validated and
    posted to the same way for all of them.
    """

    service: ClassVar[str]

    @classmethod
    def clean_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        check = ConfigCheck(config, cls)
        check.url("url")
        return check.done()

    def payload(self, message: Message) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, destination: Destination, message: Message) -> None:
        post_json(destination.config["url"], self.payload(message), service=self.service)
