"""Running a batch of probes concurrently, each on its own slot and deadline."""

from __future__ import annotations

import asyncio
import atexit
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings

from checks.netpolicy import allowed_addresses
from checks.probes import get_probe
from checks.probes.base import Observation, ProbeSpec
from checks.probes.httpclient import AiohttpClient, HttpClient, LeanClient

logger = logging.getLogger(__name__)


class GuardedResolver(AbstractResolver):
    """Resolves names like the system does, then drops addresses the policy denies.

    Checking here means the address actually connected to is the one checked,
    for every request and every redirect hop, with no window between a check
    and a second lookup.
    """

    def __init__(self) -> None:
        self.inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self.inner.resolve(host, port, family)
        allowed = set(allowed_addresses(host, [answer["host"] for answer in answers]))
        return [answer for answer in answers if answer["host"] in allowed]

    async def close(self) -> None:
        await self.inner.close()


class Resources:
    """What the probes of a worker share: HTTP connections, opened on first use.

    `http_client` is what HTTP probes fetch with: the lean client or aiohttp, as
    PROBE_HTTP_CLIENT says. `http` is the aiohttp session, which the WebSocket
    probe (and the aiohttp client) use.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._http: aiohttp.ClientSession | None = None
        self._client: HttpClient | None = None

    @property
    def http_client(self) -> HttpClient:
        if self._client is None:
            if settings.PROBE_HTTP_CLIENT == "lean":
                self._client = LeanClient(self.concurrency)
            else:
                self._client = AiohttpClient(lambda: self.http)
        return self._client

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency,
                resolver=GuardedResolver(),
                ttl_dns_cache=10,
                enable_cleanup_closed=True,
            )
            # Deadlines are enforced per probe by the runner, over the whole
            # probe (not per read), so the session itself has none.
            self._http = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._http

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._http is not None:
            await self._http.close()


@dataclass
class Run:
    spec: ProbeSpec
    scheduled_at: datetime
    started_at: datetime | None = None
    observation: Observation | None = None


# Probes wake on a 20 ms grid, the ones whose slots fall in the same 20 ms
# together, rather than each on its own slot. Every wake-up of a worker costs
# more CPU than the probe it starts (a pass of the event loop, caches gone cold
# while it slept); a batch's slots are spread over a second or so, so waking
# per slot made the probe workers' CPU per probe about half as large again
# (bench/fleet.py). A probe starts at most this late; never early.
START_QUANTUM = 0.02


async def run_one(run: Run, resources: Resources, gate: asyncio.Semaphore) -> None:
    wake = math.ceil(run.scheduled_at.timestamp() / START_QUANTUM) * START_QUANTUM
    delay = wake - time.time()
    if delay > 0:
        # Claimed a little ahead of time; start on the slot, not on the tick.
        await asyncio.sleep(delay)
    async with gate:
        run.started_at = datetime.now(UTC)
        started = time.perf_counter()
        probe = get_probe(run.spec.kind)
        try:
            async with asyncio.timeout(run.spec.timeout):
                run.observation = await probe.observe(run.spec, resources)
        except TimeoutError:
            run.observation = Observation.failed(
                f"timed out after {run.spec.timeout:g} s", (time.perf_counter() - started) * 1000
            )
        except Exception as exc:  # one broken probe must never take the batch down
            logger.exception("probe crashed", extra={"monitor_id": run.spec.monitor_id})
            run.observation = Observation.failed(f"probe crashed: {type(exc).__name__}: {exc}")


async def run_batch(runs: list[Run], resources: Resources) -> None:
    gate = asyncio.Semaphore(resources.concurrency)
    await asyncio.gather(*(run_one(run, resources, gate) for run in runs))


async def run_once(runs: list[Run], concurrency: int) -> None:
    resources = Resources(concurrency)
    try:
        await run_batch(runs, resources)
    finally:
        await resources.close()


class _Kept(threading.local):
    pid: int | None = None
    loop: asyncio.AbstractEventLoop | None = None
    resources: Resources | None = None


_kept = _Kept()


def execute(runs: list[Run], concurrency: int, keep: bool = False) -> list[Run]:
    """Run probes to completion; `keep` reuses this thread's loop and HTTP session.

    A worker process runs batch after batch: keeping one event loop and one
    connection pool per process saves building them (and new TCP and TLS
    handshakes to hosts probed often) every batch. A forked child starts its own.
    """
    if not keep:
        asyncio.run(run_once(runs, concurrency))
        return runs
    if _kept.loop is None or _kept.pid != os.getpid() or _kept.loop.is_closed():
        _kept.pid, _kept.loop = os.getpid(), asyncio.new_event_loop()
        _kept.resources = Resources(concurrency)
        atexit.register(_close_kept, _kept.loop, _kept.resources)
    assert _kept.resources is not None
    _kept.loop.run_until_complete(run_batch(runs, _kept.resources))
    return runs


def _close_kept(loop: asyncio.AbstractEventLoop, resources: Resources) -> None:
    if not loop.is_closed():
        loop.run_until_complete(resources.close())
        loop.close()


def observe_now(spec: ProbeSpec) -> Run:
    """Probe one monitor immediately (the admin's "Run now")."""
    run = Run(spec, datetime.now(UTC))
    return execute([run], 1)[0]


__all__: list[Any] = ["GuardedResolver", "Resources", "Run", "execute", "observe_now"]
