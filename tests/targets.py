"""Servers the tests probe, on loopback: an HTTP(S) target with scripted routes,
and a raw one that answers with whatever bytes a test scripts."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    drip: float = 0.0  # seconds between body bytes
    hits: int = 0


class HttpTarget:
    """A real HTTP server whose answers each test scripts per path."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[dict[str, Any]] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers),
                     "body": body}
                )  # fmt: skip
                route = target.routes.get(self.path.split("?")[0])
                if route is None:
                    route = Route(404, b"not found")
                route.hits += 1
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    if route.drip:
                        for byte in route.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(route.drip)
                    else:
                        self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def route(self, path: str, status: int = 200, body: Any = b"", **kwargs: Any) -> Route:
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            kwargs.setdefault("headers", {}).setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        self.routes[path] = Route(status, body, **kwargs)
        return self.routes[path]

    def redirect(self, path: str, location: str, status: int = 302) -> Route:
        return self.route(path, status, headers={"Location": location})

    def gzip_bomb(self, path: str, size: int) -> Route:
        return self.route(
            path, body=gzip.compress(b"0" * size), headers={"Content-Encoding": "gzip"}
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def silent_tcp_server() -> Iterator[int]:
    """Accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Answer:
    """Bytes to send back, then what to do with the connection."""

    data: bytes
    then: str = "keep"  # "keep" reading requests, "close" it, or "hang" (hold it, read no more)


@dataclass
class Exchange:
    connection: int  # which connection it came on, from 1
    request: bytes  # head and body as received


class LoopbackServer:
    """Accepts connections on 127.0.0.1 and hands each to `handle` in its own thread."""

    def __init__(self) -> None:
        self.connections = 0
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
            self.connections += 1
            args = (conn, self.connections)
            threading.Thread(target=self.handle, args=args, daemon=True).start()

    def handle(self, conn: socket.socket, number: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RawHttpServer(LoopbackServer):
    """Plays servers that bend HTTP: `script(exchange)` gives the Answer to each request,
    or None to close the connection without answering."""

    def __init__(self, script: Callable[[Exchange], Answer | None]) -> None:
        self.script = script
        self.exchanges: list[Exchange] = []
        super().__init__()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handle(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(5)
        with conn:
            while not self.stop.is_set():
                request = _read_request(conn)
                if request is None:
                    return
                exchange = Exchange(number, request)
                self.exchanges.append(exchange)
                answer = self.script(exchange)
                if answer is None:
                    return
                try:
                    conn.sendall(answer.data)
                except OSError:
                    return
                if answer.then == "close":
                    return
                if answer.then == "hang":
                    self.stop.wait()
                    return


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
    except OSError:
        return None
    return head + b"\r\n\r\n" + body
