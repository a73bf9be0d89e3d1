"""The HTTP transports under the http probe: a lean one of our own, and aiohttp.

`HttpProbe.fetch` follows redirects itself, hop by hop, and asks a transport
for one exchange at a time: `await client.exchange(Request(...))` returns the
status, the headers and at most `request.limit` bytes of the decoded body, or
raises an exception whose text `describe_error` turns into the sentence a user
reads.

`LeanClient` is an asyncio Protocol around httptools (llhttp, the parser
aiohttp and Node use) with a keep-alive pool. It does only what a probe needs,
so it costs less CPU per request than aiohttp (measured: bench/http_clients.py);
`AiohttpClient` is the same interface over an aiohttp session, kept selectable
(`PROBE_HTTP_CLIENT=aiohttp`) so the two can be compared in the real stack.

Both resolve names through the network policy (`allowed_addresses`) and
connect to an address it allows, so the address checked is the address used.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Protocol

import httptools
from yarl import URL

from checks.netpolicy import DeniedAddress, allowed_addresses, check_address
from checks.probes.tcp import is_ip

if TYPE_CHECKING:
    import aiohttp

# RFC 9110 9.2.2: a request that may be sent twice. Only these are retried
# when a kept-alive connection turns out to have been closed by the server.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# aiohttp sends a Content-Length: 0 for these even without a body; so do we.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# An idle connection is closed after this long, as aiohttp's keepalive_timeout.
# Servers close theirs after 5-75 s; keeping ours longer only finds them closed.
KEEPALIVE = 15.0
# Resolved addresses are kept this long, as the aiohttp connector's ttl_dns_cache.
DNS_TTL = 10.0
DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpClientError(Exception):
    """An exchange failed; the text is the sentence a user reads."""


class _Dropped(Exception):
    """The connection closed before a single byte of the answer arrived."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes  # decompressed, at most the limit asked for


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: URL
    headers: Mapping[str, str]
    body: str | None
    verify_tls: bool
    limit: int  # bytes of the decompressed body to read at most


class HttpClient(Protocol):
    async def exchange(self, request: Request) -> Reply: ...

    async def close(self) -> None: ...


@cache
def tls_context(verify: bool) -> ssl.SSLContext:
    """The one TLS context per kind both clients use (loading the CA store takes ~ms)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def basic_authorization(username: str, password: str) -> str:
    # RFC 7617 names UTF-8; for ASCII credentials it is what aiohttp's latin-1 sends.
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


# --- The lean client ----------------------------------------------------------------

Key = tuple[str, str, int, bool]  # scheme, host, port, verify_tls


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one exchange at a time, a fresh parser for each.

    The parser calls back as bytes arrive; the exchange's future resolves once,
    when the answer is complete (or capped, or broken), so a small answer costs
    one wake-up of the waiting probe.
    """

    def __init__(self, client: LeanClient, key: Key) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = False  # an exchange was sent on it
        self.early = b""  # bytes the server sent before any request (it is not HTTP)
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self._reset(0, False)

    def _reset(self, limit: int, head: bool) -> None:
        self.limit = limit
        self.head = head
        self.answered = False  # any byte of the answer arrived
        self.done = False
        self.complete = False  # the parser saw the whole answer: it can read the next one
        self.reusable = False
        self.interim = False  # inside a 1xx answer
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers: dict[str, str] = {}
        self.until_close = False  # the body ends when the connection does (HTTP/1.0 style)
        self.decoder: zlib._Decompress | None = None
        self.chunks: list[bytes] = []
        self.size = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            if not self.used and len(self.early) < 65536:
                self.early += data  # a server that speaks first: read as its answer
                return
            # Bytes nobody asked for on an idle connection: its framing can't be trusted.
            self.abort()
            return
        if self.done:
            return  # the rest of an answer we stopped reading (capped); paused anyway
        self.answered = True
        assert self.parser is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish(reusable=False)  # 101: the rest is another protocol
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, HttpClientError) else _bad_response(exc))
        except httptools.HttpParserError as exc:
            self._fail(_bad_response(exc))

    def eof_received(self) -> bool | None:
        self._lost()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.interim, self.raw_headers = True, []  # 100 Continue, 103 Early Hints: skip
            return
        self.status = status
        self.headers = headers = {
            name.decode("latin-1").lower(): value.decode("utf-8", "replace")
            for name, value in self.raw_headers
        }
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decoder = _DeflateDecoder()  # type: ignore[assignment]
        self.until_close = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )
        if self.head:
            # llhttp does not know the request was HEAD and would wait for the
            # Content-Length it announces; the answer is complete here. The next
            # exchange on this connection gets a fresh parser.
            self._finish(reusable=self.parser.should_keep_alive())

    def on_body(self, data: bytes) -> None:
        if self.done:
            return
        room = self.limit - self.size
        if self.decoder is not None:
            try:
                # max_length: a gzip bomb inflates at most `room` bytes, ever.
                data = self.decoder.decompress(data, room)
            except zlib.error as exc:
                raise HttpClientError(
                    f"could not read the body: its {self.headers.get('content-encoding')} "
                    f"encoding is broken ({exc})"
                ) from exc
        self.chunks.append(data[:room])
        self.size += min(len(data), room)
        if self.size >= self.limit:
            # Read enough: stop here, and never reuse a connection with a body unread.
            assert self.transport is not None
            self.transport.pause_reading()
            self._finish(reusable=False)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True
        if self.done:
            return
        if self.decoder is not None:
            try:
                self.chunks.append(self.decoder.flush()[: self.limit - self.size])
            except zlib.error as exc:
                self._fail(HttpClientError(f"could not read the body: {exc}"))
                return
        assert self.parser is not None
        self._finish(reusable=self.parser.should_keep_alive())

    # The exchange

    def send(self, request: bytes, limit: int, head: bool) -> asyncio.Future[None]:
        assert self.transport is not None
        if self.closed or self.transport.is_closing():
            raise _Dropped()
        if not self.complete:
            # A fresh parser unless the last answer was read to its end (after a
            # HEAD answer the parser still waits for the body it announced).
            self.parser = httptools.HttpResponseParser(self)
        self._reset(limit, head)
        self.waiter = waiter = self.client.loop.create_future()
        self.used = True
        self.transport.write(request)
        if self.early:
            early, self.early = self.early, b""
            self.data_received(early)
        return waiter

    def reply(self) -> Reply:
        return Reply(self.status, self.headers, b"".join(self.chunks))

    def _finish(self, reusable: bool) -> None:
        self.done, self.reusable = True, reusable
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.done, self.reusable = True, False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def _lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.client.forget(self)
        if self.waiter is None or self.done:
            return
        if not self.answered:
            self._fail(_Dropped())
        elif self.status and self.until_close and not self.head:
            self._finish(reusable=False)  # the end of the connection is the end of the body
        elif self.status:
            self._fail(
                HttpClientError(
                    "could not read the body: the server closed the connection "
                    f"after {self.size} bytes, before the end of the body"
                )
            )
        else:
            self._fail(HttpClientError("the server closed the connection without answering"))

    def abort(self) -> None:
        self.reusable = False
        if not self.closed:
            self.closed = True
            self.client.forget(self)
        if self.transport is not None:
            self.transport.abort()


class _DeflateDecoder:
    """Content-Encoding: deflate is zlib-wrapped by the RFC, raw deflate by some servers."""

    def __init__(self) -> None:
        self.inner: zlib._Decompress | None = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self.inner is None:
            if not data:
                return b""
            zlib_header = data[0] & 0x0F == 8
            self.inner = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        return self.inner.decompress(data, max_length)

    def flush(self) -> bytes:
        return self.inner.flush() if self.inner is not None else b""


def _bad_response(exc: Exception) -> HttpClientError:
    return HttpClientError(f"bad HTTP response: {exc}")


class LeanClient:
    """HTTP/1.1 exchanges over a keep-alive pool per (scheme, host, port, verify_tls).

    One per worker process (it lives as long as the runner's Resources). The
    runner lets at most `limit` probes run at once, so at most `limit`
    connections are busy; at most `limit` more wait idle in the pool.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.loop = asyncio.get_running_loop()
        self._idle: dict[Key, dict[Connection, None]] = {}
        self._idle_count = 0
        self._swept = self.loop.time()
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}

    async def exchange(self, request: Request) -> Reply:
        method, url = request.method, request.url
        scheme, host = url.scheme, url.raw_host
        if scheme not in DEFAULT_PORTS or not host:
            raise HttpClientError(f"invalid URL {url}")
        port = url.port or DEFAULT_PORTS[scheme]
        key: Key = (scheme, host, port, request.verify_tls or scheme == "http")
        data = _request_bytes(method, url, host, request.headers, request.body)
        head, limit = method == "HEAD", request.limit
        conn = self._pooled(key)
        if conn is not None:
            try:
                return await self._exchange(conn, data, limit, head)
            except _Dropped:
                # The server closed the idle connection as we sent on it: nothing
                # was answered, so the request can go again, once, if repeatable.
                if method not in IDEMPOTENT:
                    raise HttpClientError(
                        "the server closed the connection without answering"
                    ) from None
        conn = await self._connect(key, url.host or host)
        try:
            return await self._exchange(conn, data, limit, head)
        except _Dropped:
            raise HttpClientError("the server closed the connection without answering") from None

    async def _exchange(self, conn: Connection, request: bytes, limit: int, head: bool) -> Reply:
        try:
            await conn.send(request, limit, head)
        except BaseException:
            # An error, a timeout, a cancel: the connection's state is unknown.
            conn.abort()
            raise
        reply = conn.reply()
        self._release(conn)
        return reply

    # The pool

    def _pooled(self, key: Key) -> Connection | None:
        idle = self._idle.get(key)
        now = self.loop.time()
        while idle:
            conn, _ = idle.popitem()  # the most recently used: the least likely closed
            self._idle_count -= 1
            if now - conn.idle_since < KEEPALIVE and not conn.closed:
                return conn
            conn.abort()
        return None

    def _release(self, conn: Connection) -> None:
        conn.waiter = None
        if not conn.reusable or conn.closed or self._idle_count >= self.limit:
            conn.abort()
            return
        now = self.loop.time()
        conn.idle_since = now
        self._idle.setdefault(conn.key, {})[conn] = None
        self._idle_count += 1
        if now - self._swept > KEEPALIVE:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._swept = now
        for idle in list(self._idle.values()):
            for conn in [c for c in idle if now - c.idle_since >= KEEPALIVE]:
                conn.abort()
        self._idle = {key: idle for key, idle in self._idle.items() if idle}

    def forget(self, conn: Connection) -> None:
        """A connection closed: out of the pool if it waited there."""
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            del idle[conn]
            self._idle_count -= 1

    async def close(self) -> None:
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.abort()
        self._idle.clear()
        self._idle_count = 0

    # Connecting

    async def _connect(self, key: Key, hostname: str) -> Connection:
        scheme, host, port, verify = key
        tls = tls_context(verify) if scheme == "https" else None
        last: OSError | None = None
        for address in await self._addresses(host, port):
            try:
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self, key),
                    address,
                    port,
                    ssl=tls,
                    # SNI and the certificate check are against the name, not the address.
                    server_hostname=host if tls else None,
                )
            except ssl.SSLCertVerificationError as exc:
                raise HttpClientError(
                    f"TLS certificate rejected for {hostname}: {exc.verify_message}"
                ) from exc
            except ssl.SSLError as exc:
                raise HttpClientError(f"TLS handshake failed: {_first_line(exc)}") from exc
            except OSError as exc:
                last = exc
                continue
            assert isinstance(conn, Connection)
            return conn
        assert last is not None
        if isinstance(last, ConnectionRefusedError):
            raise HttpClientError(f"connection refused by {hostname}:{port}") from last
        raise HttpClientError(
            f"cannot connect to {hostname}:{port}: {last.strerror or last}"
        ) from last

    async def _addresses(self, host: str, port: int) -> list[str]:
        literal = host.strip("[]")
        if is_ip(literal):
            check_address(literal)
            return [literal]
        now = self.loop.time()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            answers = cached[1]
        else:
            try:
                infos = await self.loop.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
                )
            except socket.gaierror as exc:
                raise HttpClientError(f"DNS lookup failed for {host}") from exc
            answers = list(dict.fromkeys(str(info[4][0]) for info in infos))
            if len(self._dns) > 10_000:
                self._dns.clear()  # a bound, not an LRU: entries live 10 s anyway
            self._dns[(host, port)] = (now + DNS_TTL, answers)
        # The policy applies on every use, cached or not.
        return allowed_addresses(host, answers)


def _request_bytes(
    method: str, url: URL, host: str, headers: Mapping[str, str], body: str | None
) -> bytes:
    """The request head (and body) as one write, with aiohttp's default headers."""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    if not url.is_default_port():
        host = f"{host}:{url.port}"
    fields = {"host": ("Host", host), "accept": ("Accept", "*/*")}
    fields["accept-encoding"] = ("Accept-Encoding", "gzip, deflate")
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise HttpClientError(f"invalid header {name!r}: line breaks are not allowed")
        fields[name.lower()] = (name, value)
    payload = b""
    if body is not None:
        payload = body.encode()
        fields.setdefault("content-type", ("Content-Type", "text/plain; charset=utf-8"))
    if body is not None or method in BODY_METHODS:
        fields["content-length"] = ("Content-Length", str(len(payload)))
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in fields.values())
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- aiohttp, the other choice ---------------------------------------------------------


class AiohttpClient:
    """The same exchange over an aiohttp session (the runner's, with its guarded resolver)."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self.session = session

    async def exchange(self, request: Request) -> Reply:
        async with self.session().request(
            request.method,
            request.url,
            headers=request.headers,
            data=request.body,
            allow_redirects=False,
            ssl=tls_context(True) if request.verify_tls else False,
        ) as response:
            raw = await read_capped(response, request.limit)
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Reply(response.status, headers, raw)

    async def close(self) -> None:
        pass  # the session is the runner's to close


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the (decompressed) body, streaming."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


__all__ = [
    "AiohttpClient",
    "DeniedAddress",
    "HttpClient",
    "HttpClientError",
    "LeanClient",
    "Reply",
    "Request",
    "basic_authorization",
    "tls_context",
]
