"""HTTP client benchmark: what one request costs the probe worker with each client.

Starts a loopback target (nginx if installed, else bench/target_farm.py), then, in
this one process and one asyncio loop (as a probe worker runs), measures CPU
milliseconds per request and requests per second for:

- `aiohttp`: the session exactly as the runner builds it (checks/runner.py
  Resources) behind `AiohttpClient`, which HTTP probes use with
  PROBE_HTTP_CLIENT=aiohttp;
- `httpx`: `httpx.AsyncClient` (not a Watchpost dependency: measured when
  installed, `.venv/bin/pip install httpx`);
- `lean`: `LeanClient` (checks/probes/httpclient.py), the default;
- `probe/aiohttp`, `probe/lean`: a whole HTTP probe through the runner
  (`run_batch`: the gate, the deadline, `HttpProbe.observe` with its redirect
  loop, body decoding and JSON parsing) with each client.

over five targets: HTTP with keep-alive and a 15-byte JSON body; the same with a
3.5 KB JSON page gzipped; HTTPS (a trustme certificate, verified) with keep-alive;
and HTTP and HTTPS where the server closes after every answer (a new TCP, and
TLS, handshake per request: what probing many hosts once each costs), at
several concurrencies, rounds rotated.

    make bench-http
    .venv/bin/python bench/http_clients.py [--seconds 0.8] [--concurrency 10,50,200] [--rounds 2]

Prints a table per target and writes bench/results/http-clients-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    BENCH_DIR,
    REPO_DIR,
    Crashed,
    free_port,
    host_info,
    nginx_conf,
    print_table,
    wait_port,
    write_results,
)

SMALL = '{"status":"ok"}'
# A health page with 80 components: 3.5 KB of JSON that gzip shrinks to 0.4 KB.
BIG = json.dumps(
    {"status": "ok", "checks": {f"component-{n}": {"status": "ok", "ms": n} for n in range(80)}}
)
CLIENTS = ("aiohttp", "httpx", "lean", "probe/aiohttp", "probe/lean")


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    body: str  # what a correct client reads
    fresh: bool  # the server closes after every answer: a new connection per request


HOW_TO_READ = """\
How to read this: every figure was measured in this one process, side by side, the
clients in a rotated order each round; the medians over the rounds are shown. "CPU
ms/req" is the process's CPU time (user + system, every thread) over the requests,
so it includes asyncio's own work and the few lines driving the load, the same for
every client; "x aiohttp" divides it by aiohttp's at the same target and
concurrency (below 1: cheaper). "req/s" is wall-clock and shares two cores with the
target server (nginx or the asyncio farm) and the machine's other users: trust the
CPU column and its ratios more. The probe/ rows are what a probe worker pays per
HTTP probe (the runner's task, gate and deadline, the redirect loop, decoding and
JSON parsing of the body) on top of the client; the difference between probe/lean
and lean is the probe's own share. The "new connection" targets pay a TCP (and a
TLS) handshake per request, as a worker does for hosts it probes once an interval
(idle connections are kept only 15 s); there the handshake, not the HTTP client,
dominates."""


# --- Targets ------------------------------------------------------------------------

NGINX_SERVERS = """\
    ssl_certificate {tmp}/server.pem;
    ssl_certificate_key {tmp}/server.pem;
    default_type application/json;
    server {{
        listen 127.0.0.1:{http};
        location / {{ return 200 '{small}'; }}
        location /big {{
            gzip on; gzip_types application/json; gzip_min_length 0; gzip_comp_level 1;
            return 200 '{big}';
        }}
    }}
    server {{ listen 127.0.0.1:{https} ssl; location / {{ return 200 '{small}'; }} }}
    server {{
        listen 127.0.0.1:{close}; keepalive_timeout 0;
        location / {{ return 200 '{small}'; }}
    }}
    server {{
        listen 127.0.0.1:{tls_close} ssl; keepalive_timeout 0;
        location / {{ return 200 '{small}'; }}
    }}
"""


def wait_listening(port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    def check_alive() -> None:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"the target exited with {proc.returncode}")

    try:
        wait_port(port, check_alive)
    except Crashed as exc:
        raise SystemExit(str(exc)) from None


def start_targets(tmp: Path, pem: Path) -> tuple[list[Target], list[subprocess.Popen[bytes]], str]:
    ports = {name: free_port() for name in ("http", "https", "close", "tls_close")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for name in ("https", "tls_close"):
        urls[name] = urls[name].replace("http:", "https:")
    nginx = shutil.which("nginx")
    procs: list[subprocess.Popen[bytes]] = []
    if nginx:
        (tmp / "server.pem").write_bytes(pem.read_bytes())
        conf = tmp / "nginx.conf"
        conf.write_text(
            nginx_conf(tmp, NGINX_SERVERS.format(tmp=tmp, small=SMALL, big=BIG, **ports))
        )
        procs.append(_spawn([nginx, "-p", str(tmp), "-c", str(conf)], tmp / "nginx.log"))
        what = f"nginx ({nginx}, 1 worker process)"
        big_url = f"{urls['http']}/big"
    else:
        farm = [sys.executable, str(BENCH_DIR / "target_farm.py")]
        flags = {"http": [], "https": ["--tls", str(pem)], "close": ["--close"]}
        flags["tls_close"] = ["--tls", str(pem), "--close"]
        for name, extra in flags.items():
            cmd = [*farm, "--port", str(ports[name]), *extra]
            procs.append(_spawn(cmd, tmp / f"farm-{name}.log"))
        gz = free_port()
        cmd = [*farm, "--port", str(gz), "--gzip"]
        procs.append(_spawn(cmd, tmp / "farm-gzip.log"))
        ports["gzip"] = gz
        what = "asyncio target farm (bench/target_farm.py, one process per target)"
        big_url = f"http://127.0.0.1:{gz}/big"
    for port in ports.values():
        wait_listening(port, procs)
    targets = [
        Target("http keep-alive, 15 B JSON", f"{urls['http']}/", SMALL, False),
        Target("http keep-alive, 3.5 KB JSON gzipped", big_url, BIG, False),
        Target("https keep-alive, 15 B JSON", f"{urls['https']}/", SMALL, False),
        Target("http new connection per request", f"{urls['close']}/", SMALL, True),
        Target("https new connection per request", f"{urls['tls_close']}/", SMALL, True),
    ]
    return targets, procs, what


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while grace and time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.05)
    for proc in procs:
        proc.wait()


# --- Clients --------------------------------------------------------------------------

Fetch = Callable[[str], Awaitable[str]]


@dataclass
class Client:
    """One client at one concurrency: fetch(url) -> body, and how to close it."""

    fetch: Fetch | None  # None: the probe rows drive whole batches instead
    close: Callable[[], Awaitable[None]]
    batch: Callable[[str, int], Awaitable[list[str]]] | None = None


def make_client(name: str, concurrency: int, trust: ssl.SSLContext) -> Client:
    from django.conf import settings

    from checks.probes.httpclient import Request
    from checks.runner import Resources

    if name == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        session = httpx.AsyncClient(verify=trust, limits=limits, timeout=None)

        async def fetch_httpx(url: str) -> str:
            return (await session.get(url)).text

        return Client(fetch_httpx, session.aclose)
    kind = name.removeprefix("probe/")
    settings.PROBE_HTTP_CLIENT = kind
    resources = Resources(concurrency)
    if name.startswith("probe/"):
        return Client(None, resources.close, lambda url, n: probe_batch(resources, url, n))
    client = resources.http_client
    headers = {"User-Agent": settings.PROBE_USER_AGENT}
    limit = settings.PROBE_BODY_LIMIT

    async def fetch(url: str) -> str:
        request = Request("GET", _url(url), headers, None, True, limit)
        return (await client.exchange(request)).body.decode()

    return Client(fetch, resources.close)


def _url(text: str) -> Any:
    from yarl import URL

    return URL(text)


async def probe_batch(resources: Any, url: str, count: int) -> list[str]:
    """`count` probes of `url` through the runner, as one batch of a probe worker."""
    from checks.probes.base import ProbeSpec
    from checks.runner import Run, run_batch

    now = datetime.now(UTC)
    runs = [Run(ProbeSpec(n, "http", url, {}, 10.0), now) for n in range(count)]
    await run_batch(runs, resources)
    bodies = []
    for run in runs:
        observation = run.observation
        assert observation is not None
        bodies.append(observation.values.get("body") or f"error: {observation.error}")
    return bodies


# --- Measuring ------------------------------------------------------------------------


async def drive(
    client: Client, url: str, requests: int, concurrency: int, seconds: float
) -> list[str]:
    """Up to `requests` requests, `concurrency` at a time, for at most about `seconds`."""
    deadline = time.perf_counter() + seconds
    bodies: list[str] = []
    if client.batch is not None:
        # Probes come in batches, as tasks bring them to a worker.
        while len(bodies) < requests and time.perf_counter() < deadline:
            size = min(max(concurrency, 100), requests - len(bodies))
            bodies += await client.batch(url, size)
        return bodies
    assert client.fetch is not None
    fetch = client.fetch

    async def worker(count: int) -> None:
        for _ in range(count):
            if time.perf_counter() > deadline:
                return
            try:
                bodies.append(await fetch(url))
            except Exception as exc:  # counted as a wrong answer, shown under the table
                bodies.append(f"error: {type(exc).__name__}: {exc}")

    share, extra = divmod(requests, concurrency)
    await asyncio.gather(*(worker(share + (n < extra)) for n in range(concurrency)))
    return bodies


async def measure(
    name: str, target: Target, concurrency: int, args: argparse.Namespace, trust: ssl.SSLContext
) -> dict[str, Any]:
    client = make_client(name, concurrency, trust)
    requests = args.requests // 4 if target.fresh else args.requests
    try:
        # Warm up: fill the pool, import lazily loaded code, parse the probe's options.
        await drive(client, target.url, 2 * concurrency, concurrency, args.seconds / 2)
        cpu, wall = time.process_time(), time.perf_counter()
        bodies = await drive(client, target.url, requests, concurrency, args.seconds)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await client.close()
    wrong = [body for body in bodies if body != target.body]
    return {
        "client": name,
        "target": target.name,
        "concurrency": concurrency,
        "requests": len(bodies),
        "cpu_ms_per_request": 1000 * cpu / len(bodies),
        "requests_per_s": len(bodies) / wall,
        "wrong": len(wrong),
        "first_wrong": wrong[0][:200] if wrong else None,
    }


async def run_all(args: argparse.Namespace, targets: list[Target], trust: ssl.SSLContext) -> list:
    cells: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        for target in targets:
            for concurrency in args.concurrency:
                shift = round_no % len(args.clients)
                for name in args.clients[shift:] + args.clients[:shift]:
                    if name == "httpx" and concurrency > args.httpx_max_concurrency:
                        continue
                    cell = await measure(name, target, concurrency, args, trust)
                    cell["round"] = round_no
                    cells.append(cell)
                    print(
                        f"  round {round_no + 1} {target.name} c={concurrency} {name}: "
                        f"{cell['cpu_ms_per_request']:.3f} CPU ms/req, "
                        f"{cell['requests_per_s']:.0f} req/s ({cell['requests']} requests)",
                        flush=True,
                    )
    return cells


def medians(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["target"], cell["concurrency"], cell["client"]), []).append(cell)
    rows = []
    for (target, concurrency, client), group in groups.items():
        rows.append(
            {
                "target": target,
                "concurrency": concurrency,
                "client": client,
                "cpu_ms_per_request": statistics.median(c["cpu_ms_per_request"] for c in group),
                "requests_per_s": statistics.median(c["requests_per_s"] for c in group),
                "wrong": sum(c["wrong"] for c in group),
                "first_wrong": next((c["first_wrong"] for c in group if c["first_wrong"]), None),
            }
        )
    base = {
        (r["target"], r["concurrency"]): r["cpu_ms_per_request"]
        for r in rows
        if r["client"] == "aiohttp"
    }
    probe_base = {
        (r["target"], r["concurrency"]): r["cpu_ms_per_request"]
        for r in rows
        if r["client"] == "probe/aiohttp"
    }
    for row in rows:
        key = (row["target"], row["concurrency"])
        against = probe_base if row["client"].startswith("probe/") else base
        row["x_aiohttp"] = row["cpu_ms_per_request"] / against[key] if key in against else None
    return rows


def report(rows: list[dict[str, Any]], targets: list[Target]) -> None:
    for target in targets:
        print(f"\n{target.name} ({target.url})")
        mine = sorted(
            (r for r in rows if r["target"] == target.name),
            key=lambda r: (r["concurrency"], CLIENTS.index(r["client"])),
        )
        print_table(
            ["concurrency", "client", "CPU ms/req", "x aiohttp", "req/s", "wrong"],
            [
                [
                    r["concurrency"],
                    r["client"],
                    r["cpu_ms_per_request"],
                    r["x_aiohttp"],
                    r["requests_per_s"],
                    r["wrong"],
                ]
                for r in mine
            ],
        )
        for r in mine:
            if r["first_wrong"]:
                print(f"  {r['client']} c={r['concurrency']}: {r['first_wrong']}")


# --- Main -----------------------------------------------------------------------------


def setup_django(tmp: Path) -> None:
    os.environ |= {
        "DJANGO_SETTINGS_MODULE": "monitorsite.settings",
        "WATCHPOST_DATA_DIR": str(tmp / "data"),
        "SECRET_KEY": secrets.token_urlsafe(40),
        "LOG_LEVEL": "WARNING",
    }
    # Nothing is stored or sent: the embedded defaults (files under the temp dir) do.
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SENTRY_DSN"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(REPO_DIR))
    import django

    django.setup()


def trusted(tmp: Path) -> tuple[Path, ssl.SSLContext]:
    """A trustme CA and a server certificate for 127.0.0.1; the clients trust the CA."""
    import trustme

    from checks.probes import httpclient

    ca = trustme.CA()
    pem = tmp / "farm.pem"
    pem.write_bytes(ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.bytes())
    context = ssl.create_default_context()
    ca.configure_trust(context)
    # Both Watchpost clients take their verifying context from here.
    plain = httpclient.tls_context
    httpclient.tls_context = lambda verify: context if verify else plain(False)  # type: ignore[assignment]
    return pem, context


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--requests", type=int, default=2000, help="most per measurement (new connections: /4)")
    add("--seconds", type=float, default=0.8, help="longest a measurement takes (+ warm-up)")
    add("--concurrency", default="10,50,200", help="comma-separated")
    add("--rounds", type=int, default=2)
    # httpx's connection pool scans every connection for every request: at 200 at
    # once it took ~95 CPU ms a request here, and a minute per measurement.
    add("--httpx-max-concurrency", type=int, default=50, help="skip httpx above this")
    add("--clients", default=",".join(CLIENTS), help=f"some of {','.join(CLIENTS)}")
    add("--output", type=Path, help="JSON path (default bench/results/http-clients-<ts>.json)")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.clients = [c for c in args.clients.split(",") if c]
    unknown = set(args.clients) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown clients {sorted(unknown)}; choose from {', '.join(CLIENTS)}")
    return args


def main() -> int:
    args = parse_args()
    skipped = {}
    if "httpx" in args.clients:
        try:
            import httpx  # noqa: F401
        except ImportError:
            args.clients.remove("httpx")
            skipped["httpx"] = "not installed (.venv/bin/pip install httpx; not a dependency)"
    with tempfile.TemporaryDirectory(prefix="watchpost-http-") as folder:
        tmp = Path(folder)
        setup_django(tmp)
        pem, trust = trusted(tmp)
        targets, procs, what = start_targets(tmp, pem)
        started = datetime.now(UTC)
        try:
            print(f"targets: {what}; clients: {', '.join(args.clients)}")
            for name, why in skipped.items():
                print(f"  {name}: not measured, {why}")
            if "httpx" in args.clients and max(args.concurrency) > args.httpx_max_concurrency:
                print(f"  httpx: measured up to concurrency {args.httpx_max_concurrency} only")
            cells = asyncio.run(run_all(args, targets, trust))
        finally:
            stop(procs)
    rows = medians(cells)
    report(rows, targets)
    print(f"\n{HOW_TO_READ}")
    payload = {
        "bench": "http_clients",
        "started": started.isoformat(),
        "params": {k: v for k, v in vars(args).items() if k != "output"},
        "target": what,
        "host": host_info(),
        "skipped": skipped,
        "medians": rows,
        "cells": cells,
    }
    path = write_results("http-clients", payload, args.output)
    print(f"\nwrote {path}")
    wrong = sum(r["wrong"] for r in rows)
    if wrong:
        print(f"{wrong} requests got a wrong answer (see above)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
