"""WebSocket probe: the handshake, and optionally one message and its reply.

Latency is the handshake (TCP, TLS and the HTTP upgrade). With `send`, the text
is sent once the socket is open; with `send` or `expect`, the probe waits for
the first message the server sends after that and keeps it as `reply`, which
`expect` (a substring) and the monitor's own `reply` rules judge.

The probe keeps its own deadline a little inside the runner's, so it can say
which step the server never finished and still close the socket in time.

A redirect answering the handshake is reported, not followed (browsers do not
follow one either), and an address typed into the URL is checked against the
deny-list here: the batch session's resolver only sees host names.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from django.conf import settings
from yarl import URL

from checks.assertions import Rule
from checks.models import Assertion
from checks.netpolicy import check_address
from checks.probes.base import Observation, OptionErrors, Options, Probe, ProbeSpec
from checks.probes.http import REDIRECTS, _is_ip, describe_error

KNOWN = {"send", "expect", "headers", "verify_tls"}
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


@dataclass(frozen=True)
class WebSocketConfig:
    url: str
    send: str | None = None
    expect: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True

    @property
    def waits_for_reply(self) -> bool:
        return self.send is not None or self.expect is not None


def parse(target: str, raw: Any, errors: OptionErrors) -> WebSocketConfig:
    url = URL(target) if target else None
    if url is None or url.scheme not in ("ws", "wss") or not url.host:
        errors.target("must be a ws:// or wss:// URL with a host, e.g. wss://api.example.com/ws")
    opts = Options(raw, KNOWN, errors)
    return WebSocketConfig(
        url=target,
        send=opts.str("send"),
        expect=opts.str("expect"),
        headers=opts.mapping("headers"),
        verify_tls=opts.bool("verify_tls", True),
    )


class Redirected(aiohttp.ClientError):
    """The server answered the handshake with a redirect."""


async def guard_hops(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Session middleware: sees every request, the first and any redirect hop."""
    host = request.url.host
    if host and _is_ip(host):
        check_address(host)
    response = await handler(request)
    if response.status in REDIRECTS:
        location = response.headers.get("Location", "")
        response.close()
        raise Redirected(
            f"WebSocket handshake rejected: HTTP {response.status} redirect to {location} "
            "(WebSocket clients do not follow redirects)"
        )
    return response


class NoReply(Exception):
    """The server closed the socket, or broke the protocol, instead of replying."""


@dataclass
class Deadline:
    """The probe's own deadline, kept `margin` inside the runner's to close in time."""

    at: float
    margin: float

    @classmethod
    def start(cls, timeout: float) -> Deadline:
        margin = min(0.5, timeout * 0.1)
        return cls(asyncio.get_running_loop().time() + timeout - margin, margin)


class WebSocketProbe(Probe):
    kind = "websocket"

    parse = staticmethod(parse)

    def implicit_rules(self, spec: ProbeSpec) -> list[Rule]:
        config = parse(spec.target, spec.options, OptionErrors())
        if not config.expect:
            return []
        return [Rule("expect", Assertion.Source.REPLY, "contains", critical=config.expect)]

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        errors = OptionErrors()
        config = parse(spec.target, spec.options, errors)
        if errors.errors:
            return Observation.failed(f"invalid options: {errors.errors}")
        # A light session over the batch's connector (and so its guarded
        # resolver), only to add the middleware: ws_connect takes none itself.
        async with aiohttp.ClientSession(
            connector=resources.http.connector,
            connector_owner=False,
            middlewares=(guard_hops,),
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as http:
            return await self.talk(spec, config, http)

    async def talk(
        self, spec: ProbeSpec, config: WebSocketConfig, http: aiohttp.ClientSession
    ) -> Observation:
        deadline = Deadline.start(spec.timeout)
        started = time.perf_counter()
        try:
            ws = await self.connect(config, http, deadline)
        except TimeoutError:
            return Observation.failed(
                f"no WebSocket handshake within {spec.timeout:g} s",
                (time.perf_counter() - started) * 1000,
            )
        except Exception as exc:
            return Observation.failed(
                describe_handshake_error(exc), (time.perf_counter() - started) * 1000
            )
        handshake = (time.perf_counter() - started) * 1000
        try:
            reply = await self.converse(ws, config, deadline) if config.waits_for_reply else None
        except TimeoutError:
            return Observation.failed(
                f"connected in {handshake:.0f} ms, but no reply within {spec.timeout:g} s",
                handshake,
            )
        except NoReply as exc:
            return Observation.failed(str(exc), handshake)
        finally:
            await ws.close()
        summary = f"WebSocket handshake in {handshake:.0f} ms"
        if reply is None:
            return Observation(latency_ms=handshake, summary=summary)
        return Observation(values={"reply": reply}, latency_ms=handshake, summary=summary)

    async def connect(
        self, config: WebSocketConfig, http: aiohttp.ClientSession, deadline: Deadline
    ) -> aiohttp.ClientWebSocketResponse:
        async with asyncio.timeout_at(deadline.at):
            return await http.ws_connect(
                config.url,
                headers={"User-Agent": settings.PROBE_USER_AGENT, **config.headers},
                ssl=config.verify_tls,
                max_msg_size=settings.PROBE_BODY_LIMIT,
                # Waiting for the server's close frame may use only part of what is left.
                timeout=aiohttp.ClientWSTimeout(ws_close=deadline.margin / 2),
            )

    async def converse(
        self, ws: aiohttp.ClientWebSocketResponse, config: WebSocketConfig, deadline: Deadline
    ) -> str:
        async with asyncio.timeout_at(deadline.at):
            if config.send is not None:
                await ws.send_str(config.send)
            message = await ws.receive()
        if message.type == aiohttp.WSMsgType.TEXT:
            return str(message.data)
        if message.type == aiohttp.WSMsgType.BINARY:
            return bytes(message.data).decode("utf-8", errors="replace")
        if message.type in CLOSED:
            said = message.extra if message.type == aiohttp.WSMsgType.CLOSE else None
            raise NoReply(f"the server closed the connection before replying{_closing(ws, said)}")
        raise NoReply(f"WebSocket error before a reply: {ws.exception() or message.type.name}")


def describe_handshake_error(exc: BaseException) -> str:
    if isinstance(exc, Redirected):
        return str(exc)
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status != 101:
            return f"WebSocket handshake rejected: HTTP {exc.status}"
        return f"WebSocket handshake failed: {exc.message}"
    return describe_error(exc)


def _closing(ws: aiohttp.ClientWebSocketResponse, said: str | None) -> str:
    code = ws.close_code
    if code is None:
        return ""
    try:
        name = aiohttp.WSCloseCode(code).name.lower().replace("_", " ")
    except ValueError:
        name = "application code"
    name = "normal closure" if name == "ok" else name
    return f" (code {code}, {name}: {said})" if said else f" (code {code}, {name})"


PROBE = WebSocketProbe()
