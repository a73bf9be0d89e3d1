"""The websocket probe against real WebSocket servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import WSCloseCode, WSMsgType, web
from django.core.exceptions import ValidationError
from django.test import override_settings

from checks.models import Monitor
from checks.services import run_now
from tests.probing import check, saved_monitor
from tests.targets import closed_port, silent_tcp_server

pytestmark = pytest.mark.django_db


class WebSocketServer:
    """An aiohttp app on its own loop and thread, with one route per behaviour."""

    def __init__(self) -> None:
        self.handshakes: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_get("/echo", self.echo)
        app.router.add_get("/reject", self.reject)
        app.router.add_get("/silent", self.silent)
        app.router.add_get("/bye", self.bye)
        app.router.add_get("/moved", self.moved)
        self.runner = web.AppRunner(app)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.start())

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    async def start(self) -> None:
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"ws://{host}:{self.sock.getsockname()[1]}{path}"

    async def open(self, request: web.Request) -> web.WebSocketResponse:
        self.handshakes.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        return ws

    async def echo(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self.open(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str("pong" if message.data == "ping" else message.data)
        return ws

    async def reject(self, request: web.Request) -> web.Response:
        return web.Response(status=403, text="forbidden")

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(self.url("/echo"))

    async def silent(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self.open(request)
        async for _message in ws:
            pass  # hears everything, answers nothing
        return ws

    async def bye(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self.open(request)
        await ws.receive()
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"tenant not allowed")
        return ws

    def close(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def server() -> Iterator[WebSocketServer]:
    running = WebSocketServer()
    yield running
    running.close()


def ws_monitor(url: str, timeout: float = 5, **options: object) -> Monitor:
    return saved_monitor("websocket", url, "realtime", options=options, timeout=timeout)


def test_it_is_ok_when_the_reply_holds_the_expected_text(server: WebSocketServer) -> None:
    monitor = ws_monitor(
        server.url("/echo"), send="ping", expect="pong", headers={"Authorization": "Bearer t0ken"}
    )
    run, verdict = run_now(monitor)
    assert verdict.outcome == "ok"
    assert verdict.reason.startswith("WebSocket handshake in ")
    assert run.observation.values == {"reply": "pong"}
    assert run.observation.latency_ms > 0
    assert server.handshakes[-1]["Authorization"] == "Bearer t0ken"
    assert server.handshakes[-1]["User-Agent"].startswith("Watchpost/")


def test_it_names_a_reply_without_the_expected_text(server: WebSocketServer) -> None:
    monitor = ws_monitor(server.url("/echo"), send='{"type": "hello"}', expect="pong")
    assert check(monitor) == ("critical", 'reply does not contain "pong"')


def test_it_checks_the_handshake_alone(server: WebSocketServer) -> None:
    outcome, reason = check(ws_monitor(server.url("/silent")))
    assert outcome == "ok"
    assert reason.startswith("WebSocket handshake in ")


def test_it_reports_a_rejected_handshake(server: WebSocketServer) -> None:
    assert check(ws_monitor(server.url("/reject"), send="ping")) == (
        "error",
        "WebSocket handshake rejected: HTTP 403",
    )


def test_it_reports_a_redirect_instead_of_following_it(server: WebSocketServer) -> None:
    assert check(ws_monitor(server.url("/moved"), send="ping", expect="pong")) == (
        "error",
        f"WebSocket handshake rejected: HTTP 302 redirect to {server.url('/echo')} "
        "(WebSocket clients do not follow redirects)",
    )
    assert server.handshakes == []


def test_it_gives_up_on_a_server_that_never_replies(server: WebSocketServer) -> None:
    outcome, reason = check(ws_monitor(server.url("/silent"), timeout=1, send="ping"))
    assert outcome == "error"
    # The probe's own deadline fires first, so the reason says which step stalled.
    assert reason.startswith("connected in ")
    assert reason.endswith(" ms, but no reply within 1 s")


def test_it_gives_up_on_a_server_that_never_finishes_the_handshake() -> None:
    with silent_tcp_server() as port:
        assert check(ws_monitor(f"ws://127.0.0.1:{port}/", timeout=1)) == (
            "error",
            "no WebSocket handshake within 1 s",
        )


def test_it_reports_the_server_closing_before_it_replies(server: WebSocketServer) -> None:
    assert check(ws_monitor(server.url("/bye"), send="subscribe", expect="ok")) == (
        "error",
        "the server closed the connection before replying "
        "(code 1008, policy violation: tenant not allowed)",
    )


def test_it_reports_a_refused_connection() -> None:
    port = closed_port()
    assert check(ws_monitor(f"ws://127.0.0.1:{port}/ws")) == (
        "error",
        f"connection refused by 127.0.0.1:{port}",
    )


def test_it_refuses_denied_addresses_typed_or_resolved(server: WebSocketServer) -> None:
    outcome, reason = check(ws_monitor("ws://169.254.169.254/ws"))
    assert (outcome, "169.254.169.254 is not allowed" in reason) == ("error", True)
    assert check(ws_monitor(server.url("/echo", host="localhost")))[0] == "ok"
    with override_settings(PROBE_DENY_NETWORKS=["127.0.0.0/8", "::1/128"]):
        outcome, reason = check(ws_monitor(server.url("/echo", host="localhost")))
    assert outcome == "error"
    assert "connecting to localhost (127.0.0.1" in reason


def test_it_names_each_bad_option() -> None:
    monitor = Monitor(
        name="bad",
        kind="websocket",
        target="https://example.com/ws",
        options={"send": {"type": "ping"}, "verify_tls": "no", "subprotocol": "graphql-ws"},
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    errors = caught.value.message_dict
    assert errors["target"] == [
        "must be a ws:// or wss:// URL with a host, e.g. wss://api.example.com/ws"
    ]
    options = " | ".join(errors["options"])
    assert "send: must be text" in options
    assert "verify_tls: must be true or false" in options
    assert "subprotocol: unknown option" in options
