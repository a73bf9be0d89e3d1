"""The cheapest HTTP/1.1 target that still speaks keep-alive: a raw asyncio.Protocol.

Answers every request, whatever its path or method, with 200 and the small JSON
health body `{"status":"ok"}`. It parses nothing but the blank line that ends a
request's head: the fleet bench sends only body-less GETs, and any CPU spent
here is CPU the bench has to report separately from Watchpost's own.

    .venv/bin/python bench/target_farm.py [--port 0] [--processes 1]
    .venv/bin/python bench/target_farm.py --tls server.pem --close   # TLS, a connection per answer
    .venv/bin/python bench/target_farm.py --gzip                     # a 3.5 KB health page, gzipped

(`--tls`, `--gzip` and `--close` are for bench/http_clients.py where nginx is missing.)

    .venv/bin/python bench/target_farm.py --fail-dir DIR   # 500 for a path while DIR/<path> exists

(`--fail-dir` is for bench/fleet.py's paging phase: then each request's path is
read, and the file looked up, so every process sees a flip at once.)

Binds 127.0.0.1 with SO_REUSEPORT, so each extra process (forked) has its own
listening socket on the same port and the kernel spreads connections over them.
Prints `listening on 127.0.0.1:<port>` once every process listens, and on
SIGTERM each process prints how many requests it answered, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gzip
import json
import os
import signal
import socket
import ssl
import sys

BODY = b'{"status":"ok"}'
# A bigger health page, as a service with many components answers (bench/http_clients.py).
BIG_BODY = json.dumps(
    {
        "status": "ok",
        "checks": {f"component-{n}": {"status": "ok", "latency_ms": n} for n in range(80)},
    }
).encode()


def response(
    body: bytes, extra: bytes = b"", close: bool = False, status: bytes = b"200 OK"
) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra
        + (b"Connection: close\r\n" if close else b"Connection: keep-alive\r\n")
        + b"\r\n" + body
    )  # fmt: skip


RESPONSE = response(BODY)
FAILING = response(b'{"status":"failing"}', status=b"500 Internal Server Error")
END_OF_HEAD = b"\r\n\r\n"
# A request head larger than this is not what the bench sends: drop the connection.
MAX_PENDING = 64 * 1024


class Counter:
    requests = 0


class Responder(asyncio.Protocol):
    """One connection: answer each complete request head, pipelined or not."""

    __slots__ = ("pending", "transport")
    answer = RESPONSE
    close = False  # close the connection after each answer
    fail_dir: str | None = None  # answer FAILING for a path while this directory has it

    def __init__(self) -> None:
        self.pending = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        pending = self.pending + data if self.pending else data
        complete = pending.count(END_OF_HEAD)
        if complete:
            if self.fail_dir is None:
                answers = self.answer * complete
            else:
                heads = pending.split(END_OF_HEAD, complete)[:complete]
                answers = b"".join(map(self.answer_for, heads))
            self.transport.write(answers)  # type: ignore[union-attr]
            Counter.requests += complete
            if self.close:
                self.transport.close()  # type: ignore[union-attr]
                return
            pending = pending[pending.rfind(END_OF_HEAD) + len(END_OF_HEAD) :]
        if len(pending) > MAX_PENDING:
            self.transport.close()  # type: ignore[union-attr]
            pending = b""
        self.pending = pending

    def answer_for(self, head: bytes) -> bytes:
        """FAILING while the fail directory holds a file at the request's path."""
        parts = head.split(b" ", 2)
        path = parts[1].split(b"?", 1)[0].decode("latin-1") if len(parts) > 2 else ""
        if path.startswith("/") and ".." not in path and os.path.isfile(self.fail_dir + path):
            return FAILING
        return self.answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def die_with_parent() -> None:
    """A forked child gets SIGTERM when its parent ends, however the parent ended."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


async def serve(sock: socket.socket, ready: str | None, tls: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    server = await loop.create_server(Responder, sock=sock, backlog=4096, ssl=tls)
    if ready:
        print(ready, flush=True)
    await stop.wait()
    server.close()
    print(f"pid {os.getpid()} answered {Counter.requests} requests", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--processes", type=int, default=1, choices=(1, 2, 3, 4))
    parser.add_argument("--tls", metavar="PEM", help="serve TLS with this key and chain")
    parser.add_argument("--gzip", action="store_true", help="answer a gzipped 3.5 KB page")
    parser.add_argument("--close", action="store_true", help="close after each answer")
    parser.add_argument("--fail-dir", help="answer 500 for a path while DIR/<path> exists")
    args = parser.parse_args()
    tls = None
    if args.tls:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls)
    body, extra = BODY, b""
    if args.gzip:
        body, extra = gzip.compress(BIG_BODY, 1), b"Content-Encoding: gzip\r\n"
    Responder.answer, Responder.close = response(body, extra, args.close), args.close
    Responder.fail_dir = os.path.abspath(args.fail_dir) if args.fail_dir else None
    first = listening_socket(args.port)
    port = first.getsockname()[1]
    children = []
    for _ in range(args.processes - 1):
        # Each child binds its own socket to the same port (SO_REUSEPORT), so
        # the kernel balances connections without a shared accept queue.
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            first.close()
            asyncio.run(serve(listening_socket(port), None, tls))
            os._exit(0)
        children.append(pid)
    asyncio.run(serve(first, f"listening on 127.0.0.1:{port}", tls))
    for pid in children:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
