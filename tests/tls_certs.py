"""Certificates made on the spot (trustme) and a TLS server on loopback that serves one.

ca = TestCA()
with TlsServer(ca.issue("api.example", days=60)) as server:
    ... target=f"127.0.0.1:{server.port}", options={"ca_cert": ca.pem, ...}
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme

from tests.targets import LoopbackServer

# Half a day over the whole days, so "expires in 5 days" holds while a test runs.
SLACK = timedelta(hours=12)


class TestCA:
    """A private CA whose certificates the tests serve."""

    __test__ = False  # not a pytest test class

    def __init__(self, organization: str = "Watchpost Test CA") -> None:
        self.ca = trustme.CA(organization_name=organization)

    @property
    def pem(self) -> str:
        return self.ca.cert_pem.bytes().decode()

    def issue(self, *names: str, days: float = 60, with_root: bool = False) -> bytes:
        """Key and chain in PEM, valid for `days` more days (negative: expired that long ago)."""
        now = datetime.now(UTC)
        not_after = now + timedelta(days=days) + (SLACK if days >= 0 else -SLACK)
        leaf = self.ca.issue_cert(
            *names,
            not_before=min(now, not_after) - timedelta(days=90),
            not_after=not_after,
        )
        chain = leaf.private_key_and_cert_chain_pem.bytes()
        return chain + self.ca.cert_pem.bytes() if with_root else chain


def server_context(key_and_chain: bytes) -> ssl.SSLContext:
    """A server's TLS context that presents the given key and chain."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "server.pem"
        path.write_bytes(key_and_chain)
        context.load_cert_chain(path)
    return context


class TlsServer(LoopbackServer):
    """Accepts TLS connections on 127.0.0.1 with the given key and chain, then idles."""

    def __init__(self, key_and_chain: bytes) -> None:
        self.context = server_context(key_and_chain)
        self.handshakes = 0
        super().__init__()

    def handle(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError), self.context.wrap_socket(conn, server_side=True) as tls:
            self.handshakes += 1
            while tls.recv(1024):
                pass
