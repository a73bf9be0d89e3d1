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
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme

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


class TlsServer:
    """Accepts TLS connections on 127.0.0.1 with the given key and chain, then idles."""

    def __init__(self, key_and_chain: bytes) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "server.pem"
            path.write_bytes(key_and_chain)
            self.context.load_cert_chain(path)
        self.handshakes = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError), self.context.wrap_socket(conn, server_side=True) as tls:
            self.handshakes += 1
            while tls.recv(1024):
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.listener.close()

    def __enter__(self) -> TlsServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Any:
        self.close()
