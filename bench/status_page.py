"""Status page benchmark: a 50-component public page under gunicorn, from its cache and without.

Creates a status page (50 components in 10 groups, each fed by 1-2 monitors with
90 days of hourly rollups, an open incident, a maintenance window announced) in
a dedicated PostgreSQL database (Redis db 6 as cache, db 5 as broker), starts
two gunicorns exactly as `make run` does (`gunicorn monitorsite.wsgi --config
monitorsite/gunicorn.conf.py`, DEBUG off) on free loopback ports, one with the
default STATUS_PAGE_REFRESH_GRACE (a stale page is re-rendered by a worker) and
one with STATUS_PAGE_REFRESH_GRACE=0 (re-rendered inside gunicorn, the old way),
and one Celery worker (`celery -A monitorsite worker -Q <the refresh task's
queue> -c 1`). Then, with wrk (Debian's `wrk`) and the page's Host header, each
for --duration seconds, in rounds whose order rotates:

- the page and /api/v2/summary.json from a quiet cache (default grace);
- the page while a status change invalidates it every --invalidate-every
  seconds (a monitor flips, as the checks app writes it, and every page's cache
  is invalidated, as its signal does), once against each gunicorn. Meanwhile a
  client polls the page with If-None-Match and times how long after each
  change it first gets the new content (a new ETag): the freshness.

Beside them, in the same run, it measures what a cache miss costs: requests
with the cache invalidated before each one, one at a time (against the grace 0
gunicorn, which renders them), and the snapshot + render alone in this process.

    make bench-status
    make bench-status BENCH_ARGS="--duration 10 --connections 32 --rounds 3"
    .venv/bin/python bench/status_page.py [--duration 30] [--invalidate-every 5] [--rounds 1]

Prints the figures and writes bench/results/status-page-<timestamp>.json (or --output).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import (
    REPO_DIR,
    WRK_LUA,
    Crashed,
    PgBackends,
    Service,
    WrkRun,
    drop_logs,
    find_wrk,
    fmt,
    host_info,
    interrupted,
    percentiles,
    postmaster_pid,
    print_table,
    print_verdict,
    ratio,
    run_wrk,
    start_celery_worker,
    start_gunicorn,
    tail,
    write_results,
)
from fleet import Place, exclusive, flush_redis, prepare_database

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
DATABASE = "watchpost_bench_status"
REDIS_SERVER = "redis://127.0.0.1:6379"
CACHE_DB, BROKER_DB = 6, 5
PLACE = Place(DATABASE, broker_db=BROKER_DB, cache_db=CACHE_DB)
HOST = "status.bench.test"
# Fixed so runs are comparable; the bench's server only listens on 127.0.0.1.
SECRET_KEY = "watchpost-bench-status-not-a-secret-0123456789abcdef"
GROUPS = 10
TARGET_PER_S = 1000.0
TARGET_P99_MS = 50.0
TROUBLE = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|WORKER TIMEOUT")
PATHS = {"page": "/", "summary.json": "/api/v2/summary.json"}
REFRESH_TASK = "incidents.statuspage.tasks.refresh_page"
FRESHNESS_LIMIT = 30.0  # seconds a change may take to show before it counts as never


@dataclass(frozen=True)
class Load:
    """One kind of wrk run: which URL, against which gunicorn, with or without changes."""

    name: str
    path: str
    server: str  # "worker": the default grace; "gunicorn": STATUS_PAGE_REFRESH_GRACE=0
    changing: bool


LOADS = [
    Load("page", "/", "worker", False),
    Load("summary.json", "/api/v2/summary.json", "worker", False),
    Load("page, changing, render in gunicorn", "/", "gunicorn", True),
    Load("page, changing, render in worker", "/", "worker", True),
]
CHANGING = {"gunicorn": LOADS[2].name, "worker": LOADS[3].name}

HOW_TO_READ = f"""\
How to read this: every row is wrk against gunicorn with --connections keep-alive
connections, each sending its next request as soon as the last is answered (a
closed loop: more connections than gunicorn has threads only queue), all with
the page's Host header and "Accept-Encoding: gzip" as browsers send it; req/s
is wrk's 2xx answers over its duration, latency is wrk's, from send to full
response. "page" and "summary.json" are a quiet cache: nothing changes but the
60 s backstop TTL, which a worker serves. The two "changing" rows are the page
while a status change invalidates it every few seconds: "render in gunicorn"
is STATUS_PAGE_REFRESH_GRACE=0 (one request renders the new page inside a web
process, ~0.4 s of CPU holding the GIL that the requests queued behind it
need), "render in worker" the default (a Celery worker renders it while every
request gets the previous copy). Their ratio is what moving the render out of
gunicorn buys. "fresh after" is how long after each change the page first
served the new content (a poll every 10 ms with If-None-Match): the price of
rendering elsewhere is the queue hop, and a grace of 0 is not free either,
since its render competes with the load. "worker CPU" is the Celery worker's
(main and pool process) over the run, and per change. "uncached" sends one
request at a time with the page's cache invalidated before each (what every
visitor would cost without the cache; against the grace 0 gunicorn, which
renders it); "cached, one at a time" is the same client without the
invalidation, so their ratio is what the cache buys per request. "in process"
times page_snapshot() (the database work) and the template render of the page
in this process, without HTTP. "DB queries per hit" counts the queries of one
cached request through Django's full stack in this process. CPU is utime +
stime from /proc over each wrk run, in ms per request: gunicorn (master and
workers), the Celery worker, redis-server (shared with other users of this
machine) and the PostgreSQL backends connected to the bench database (about 0
when hits make no query; the changes' own writes count there). wrk runs on the
same machine and competes for its cores: read "machine busy" against the core
count, and trust ratios more than absolute figures on this shared, noisy
machine. Targets (the page from cache, quiet and changing with the default
grace): >= {TARGET_PER_S:,.0f} req/s, p99 < {TARGET_P99_MS:g} ms, no non-2xx answers."""


# --- The place: database, Redis, static files --------------------------------------------


def stack_env(data_dir: Path, web_concurrency: int | None, web_threads: int | None) -> dict:
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SENTRY_DSN", "ALLOWED_HOSTS"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MAKE")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "monitorsite.settings",
        "DEBUG": "false",
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": f"{PG_SERVER}/{DATABASE}",
        "REDIS_URL": f"{REDIS_SERVER}/{CACHE_DB}",
        "CELERY_BROKER_URL": f"{REDIS_SERVER}/{BROKER_DB}",
        "WATCHPOST_DATA_DIR": str(data_dir),
        "ALLOWED_HOSTS": f"127.0.0.1,{HOST}",
        "LOG_LEVEL": "INFO",
    }
    if web_concurrency:
        env["WEB_CONCURRENCY"] = str(web_concurrency)
    if web_threads:
        env["WEB_THREADS"] = str(web_threads)
    return env


def manage(env: dict[str, str], *command: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(command)} failed:\n{done.stdout}{done.stderr}")


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(REPO_DIR))
    import django

    django.setup()


# --- The page -------------------------------------------------------------------------------


def seed(components: int) -> tuple[int, int]:
    """The page, its components and monitors, 90 days of hourly rollups.

    Returns the page's id and the monitor whose flips the invalidation runs make.
    """
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from checks.models import Monitor
    from incidents.models import (
        Component,
        ComponentGroup,
        Maintenance,
        PublicIncident,
        PublicUpdate,
        StatusPage,
    )

    now = timezone.now()
    page = StatusPage.objects.create(
        host=HOST,
        title="Bench Status",
        description="Fifty components, ninety days of hourly history.",
        support_url="https://bench.test/support",
        # The server's timezone, as most installs keep: the day bars then read
        # the daily rollups the rollup job writes.
        timezone=settings.TIME_ZONE,
    )
    groups = [
        ComponentGroup.objects.create(page=page, name=f"Region {n + 1}", position=n)
        for n in range(GROUPS)
    ]
    made = []
    for n in range(components):
        component = Component.objects.create(
            page=page,
            group=groups[n % GROUPS],
            name=f"Service {n + 1:02d}",
            description=f"Public description of service {n + 1}",
            position=n,
            show_response_time=n % 5 == 0,
        )
        feeds = [
            Monitor(name=f"bench {n}-{m}", kind=Monitor.Kind.HTTP, target="https://bench.test/")
            for m in range(1 + n % 2)
        ]
        feeds[0].full_clean()  # the bench must not measure monitors the admin would refuse
        Monitor.objects.bulk_create(feeds)
        component.monitors.add(*feeds)
        made.append(component)
    # One monitor down (a partial outage), so the page is not all green.
    Monitor.objects.filter(pk=made[3].monitors.first().pk).update(status=Monitor.Status.DOWN)
    incident = PublicIncident.objects.create(
        page=page,
        title="Elevated error rates in Region 4",
        impact=PublicIncident.Impact.MINOR,
        status=PublicIncident.Status.IDENTIFIED,
        created_at=now - timedelta(minutes=40),
        published_at=now - timedelta(minutes=38),
    )
    incident.components.set([made[3]])
    for minutes, status, body in (
        (38, PublicIncident.Status.INVESTIGATING, "We are looking into elevated error rates."),
        (10, PublicIncident.Status.IDENTIFIED, "One node is failing; traffic is moving away."),
    ):
        PublicUpdate.objects.create(
            incident=incident, status=status, body=body, created_at=now - timedelta(minutes=minutes)
        )
    window = Maintenance.objects.create(
        title="Network upgrade",
        public=True,
        public_description="Switches are replaced one by one; no downtime expected.",
        starts_at=now + timedelta(days=2),
        ends_at=now + timedelta(days=2, hours=2),
    )
    window.components.set(made[10:15])
    # 90 days of hourly rollups for every monitor, a few bad hours here and there.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO checks_rollup (monitor_id, period, bucket_start, total, ok, warning,
                                       failing, latency_p50, latency_p95, latency_max)
            SELECT m.id, 'hour', h, 60, 60 - f.failing, 0, f.failing,
                   80 + (m.id * 7 + n) %% 50, 150 + (m.id * 7 + n) %% 90, 400
            FROM checks_monitor m
            CROSS JOIN generate_series(0, 90 * 24 - 1) AS n
            CROSS JOIN LATERAL (SELECT date_trunc('hour', %s::timestamptz)
                                       - n * interval '1 hour' AS h) AS hours
            CROSS JOIN LATERAL (SELECT CASE WHEN (m.id * 31 + n) %% 211 = 0 THEN 12
                                            WHEN (m.id * 17 + n) %% 97 = 0 THEN 1
                                            ELSE 0 END AS failing) AS f
            """,
            [now],
        )
        # The days those hours make, as checks.rollups writes them (days in TIME_ZONE).
        cursor.execute(
            """
            INSERT INTO checks_rollup (monitor_id, period, bucket_start, total, ok, warning,
                                       failing, latency_p50, latency_p95, latency_max)
            SELECT monitor_id, 'day',
                   date_trunc('day', bucket_start AT TIME ZONE %s) AT TIME ZONE %s,
                   sum(total), sum(ok), sum(warning), sum(failing),
                   avg(latency_p50), avg(latency_p95), max(latency_max)
            FROM checks_rollup WHERE period = 'hour'
            GROUP BY 1, 3
            """,
            [settings.TIME_ZONE, settings.TIME_ZONE],
        )
    from incidents.statuspage.cache import invalidate

    invalidate()  # bulk writes send no signals
    return page.pk, made[0].monitors.get().pk  # Service 01 has one monitor


# --- Requests one at a time -------------------------------------------------------------------


class Client:
    """One keep-alive connection to gunicorn, sending what a browser would."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Host": HOST, "Accept-Encoding": "gzip"}

    def get(
        self, path: str, extra: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            return self.send(path, extra)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # gunicorn closes a connection idle for its keepalive (2 s): a browser reconnects.
            self.conn.close()
            return self.send(path, extra)

    def send(self, path: str, extra: dict[str, str] | None) -> tuple[int, dict[str, str], bytes]:
        self.conn.request("GET", path, headers=self.headers | (extra or {}))
        answer = self.conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()

    def close(self) -> None:
        self.conn.close()


def body_of(headers: dict[str, str], body: bytes) -> bytes:
    return gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body


def first_requests(server: Service, page_id: int) -> dict[str, Any]:
    """Both URLs through the whole path (fails fast on a broken setup); fills the cache."""
    client = Client(server.port)
    sizes = {}
    try:
        for name, path in PATHS.items():
            status, headers, body = client.get(path)
            if status != 200:
                raise Crashed(f"{path} answered {status}:\n{body[:500]!r}\n{tail(server.log)}")
            text = body_of(headers, body)
            expected = b"Service 50" if name == "page" else f'"id": "{page_id}"'.encode()
            if expected not in text and expected.replace(b": ", b":") not in text:
                raise Crashed(f"{path} does not show the bench's page: {text[:300]!r}")
            sizes[name] = {"bytes_sent": len(body), "bytes": len(text)}
            if name == "page" and b"/static/incidents/status." not in text:
                raise Crashed("the page names no stylesheet")
    finally:
        client.close()
    return sizes


def one_at_a_time(
    port: int, path: str, seconds: float, least: int, before: Callable[[], None] | None
) -> dict[str, Any]:
    """Requests in a loop on one connection for `seconds` and at least `least` of them.

    `before` runs before each request, outside the time measured.
    """
    client = Client(port)
    latencies, other = [], 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline or len(latencies) < least:
            if before is not None:
                before()
            started = time.perf_counter()
            status, _, _ = client.get(path)
            latencies.append((time.perf_counter() - started) * 1000)
            other += status != 200
    finally:
        client.close()
    return {
        "requests": len(latencies),
        "non_2xx": other,
        "per_s": len(latencies) / (sum(latencies) / 1000),
        "latency_ms": percentiles(latencies, (50, 90, 99)) | {"max": max(latencies)},
    }


# --- In this process ----------------------------------------------------------------------------


def in_process(page_id: int, rounds: int) -> dict[str, Any]:
    """page_snapshot() and the page's template render, timed here without HTTP (medians)."""
    from django.db import connection
    from django.template.loader import render_to_string
    from django.test.utils import CaptureQueriesContext
    from django.urls import set_urlconf

    from incidents.models import StatusPage
    from incidents.statuspage.derive import page_snapshot
    from incidents.statuspage.middleware import PUBLIC_URLCONF
    from incidents.statuspage.views import home_context

    set_urlconf(PUBLIC_URLCONF)  # what the middleware does: the page's URLs reverse
    page = StatusPage.objects.get(pk=page_id)
    snapshot_ms, render_ms, gzip_ms, queries = [], [], [], 0
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as captured:
                snapshot = page_snapshot(page)
            snapped = time.perf_counter()
            html = render_to_string("incidents/status/home.html", home_context(snapshot))
            rendered = time.perf_counter()
            gzip.compress(html.encode(), compresslevel=6, mtime=0)  # what the cache stores too
            packed = time.perf_counter()
            snapshot_ms.append((snapped - started) * 1000)
            render_ms.append((rendered - snapped) * 1000)
            gzip_ms.append((packed - rendered) * 1000)
            queries = len(captured)
    finally:
        set_urlconf(None)
    median = lambda values: percentiles(values, (50,))["p50"]  # noqa: E731
    total = median([a + b + c for a, b, c in zip(snapshot_ms, render_ms, gzip_ms, strict=True)])
    return {
        "rounds": rounds,
        "snapshot_ms": median(snapshot_ms),
        "render_ms": median(render_ms),
        "gzip_ms": median(gzip_ms),
        "total_ms": total,
        "queries": queries,
        "per_s_one_core": 1000 / total if total else None,
    }


def queries_per_hit() -> dict[str, int]:
    """Database queries one cached request makes through Django's whole stack, here."""
    from django.db import connection
    from django.test import Client as DjangoClient
    from django.test.utils import CaptureQueriesContext

    client = DjangoClient(HTTP_HOST=HOST, HTTP_ACCEPT_ENCODING="gzip")
    counts = {}
    for name, path in PATHS.items():
        assert client.get(path).status_code == 200  # this process's host map, its copy
        with CaptureQueriesContext(connection) as captured:
            status = client.get(path).status_code
        if status != 200:
            raise Crashed(f"{path} answered {status} in process")
        counts[name] = len(captured)
    return counts


# --- Changes while the load runs --------------------------------------------------------------


class Changes(threading.Thread):
    """Every `every` seconds a status change, then the time until the page shows it.

    The change is what a real one does to the page: the monitor's status is
    written and every page's cache invalidated (the checks app's signal). Then
    one keep-alive client polls the page with If-None-Match until it gets a
    new ETag, and records how long that took.
    """

    def __init__(self, port: int, monitor_id: int, every: float) -> None:
        super().__init__(name="changes", daemon=True)
        self.port, self.monitor_id, self.every = port, monitor_id, every
        self.stopping = threading.Event()
        self.fresh_after: list[float] = []
        self.late = 0  # changes not shown within FRESHNESS_LIMIT
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connection

        client = Client(self.port)
        try:
            _, headers, _ = client.get("/")
            etag = headers.get("ETag", "")
            down, next_at = False, time.monotonic() + self.every
            # On a fixed cadence: the time a change takes to show does not delay the next.
            while not self.stopping.wait(max(0.0, next_at - time.monotonic())):
                down, next_at = not down, next_at + self.every
                self.change(down)
                etag = self.wait_for_new(client, etag)
        except BaseException as exc:  # reported by the main thread, which owns the run
            self.error = exc
        finally:
            client.close()
            connection.close()

    def change(self, down: bool) -> None:
        from checks.models import Monitor
        from incidents.statuspage.cache import invalidate

        status = Monitor.Status.DOWN if down else Monitor.Status.UP
        Monitor.objects.filter(pk=self.monitor_id).update(status=status)
        invalidate()

    def wait_for_new(self, client: Client, etag: str) -> str:
        changed = time.perf_counter()
        while time.perf_counter() - changed < FRESHNESS_LIMIT:
            status, headers, _ = client.get("/", {"If-None-Match": etag})
            if status == 200 and headers.get("ETag", etag) != etag:
                self.fresh_after.append(time.perf_counter() - changed)
                return headers["ETag"]
            time.sleep(0.01)
        self.late += 1
        return etag

    def finish(self) -> None:
        self.stopping.set()
        self.join(FRESHNESS_LIMIT + 10)
        if self.error is not None:
            raise Crashed(f"the changes thread failed: {self.error!r}")


# --- The run ------------------------------------------------------------------------------------


@dataclass
class Stack:
    """The two gunicorns (by the grace they run with), the worker, and what they share."""

    servers: dict[str, Service]
    worker: Service
    redis_pid: int
    monitor_id: int
    script: Path
    postmaster: int
    log_sizes: dict[str, int] = field(default_factory=dict)

    def services(self) -> list[Service]:
        return [*self.servers.values(), self.worker]

    def check_alive(self) -> None:
        for service in self.services():
            service.check_alive()

    def stop(self) -> None:
        for service in self.services():
            self.log_sizes[service.name] = service.log_size()
            service.stop()

    def trouble(self) -> list[str]:
        found = []
        for service in self.services():
            size = self.log_sizes.get(service.name, service.log_size())
            text = service.log.read_bytes()[:size].decode(errors="replace")
            found += [
                f"{service.name}: {line}" for line in text.splitlines() if TROUBLE.search(line)
            ]
        return found


def run_load(args: argparse.Namespace, stack: Stack, load: Load) -> dict[str, Any]:
    from django.db import connection

    connection.close()  # this process's backend stays idle, out of the measured CPU
    server = stack.servers[load.server]
    changes = Changes(server.port, stack.monitor_id, args.invalidate_every)
    if load.changing:
        changes.start()
    wrk_args = ["-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration:g}s"]
    wrk_args += ["--timeout", "10s", "-H", f"Host: {HOST}", "-H", "Accept-Encoding: gzip"]
    try:
        run = run_wrk(
            wrk_args,
            f"http://127.0.0.1:{server.port}{load.path}",
            stack.script,
            {"gunicorn": server.pid, "celery worker": stack.worker.pid, "redis": stack.redis_pid},
            PgBackends(stack.postmaster, DATABASE),
            stack.check_alive,
        )
    finally:
        if load.changing:
            changes.finish()
    return figures(run) | {
        "load": load.name,
        "changes": len(changes.fresh_after) + changes.late if load.changing else 0,
        "fresh_after_s": changes.fresh_after,
        "late_changes": changes.late,
    }


def figures(run: WrkRun) -> dict[str, Any]:
    ok = run.figures["ok"]
    return {
        "per_s": run.per_s(),
        "answered_2xx": ok,
        "non_2xx": run.figures["other"],
        "socket_errors": run.socket_errors(),
        "latency_ms": run.latency_ms(),
        "cpu_ms_per_request": {
            group: used * 1000 / ok if ok else None for group, used in run.cpu_seconds.items()
        },
        "worker_cpu_s": run.cpu_seconds["celery worker"],
        "machine_busy_cores": run.busy_cores,
        "others_cores": run.others_cores(),
        "wrk": run.figures,
        "wrk_output": run.output,
    }


def start_stack(env: dict[str, str], logs: Path, monitor_id: int, redis_pid: int) -> Stack:
    from monitorsite.celery import app

    # The queue the refresh task is routed to, as monitorsite/celery.py routes it.
    queue = app.amqp.router.route({}, REFRESH_TASK)["queue"].name
    script = logs / "status.lua"
    script.write_text(WRK_LUA)
    servers: dict[str, Service] = {}
    try:
        servers["worker"] = start_gunicorn(env, logs, "gunicorn-grace-default")
        inline = env | {"STATUS_PAGE_REFRESH_GRACE": "0"}
        servers["gunicorn"] = start_gunicorn(inline, logs, "gunicorn-grace-0")
        worker = start_celery_worker(env, logs, queue, concurrency=1)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    print(f"gunicorn on ports {servers['worker'].port} (default grace) and "
          f"{servers['gunicorn'].port} (grace 0); a Celery worker on queue {queue!r}")  # fmt: skip
    return Stack(servers, worker, redis_pid, monitor_id, script, postmaster_pid())


def measure(args: argparse.Namespace, logs: Path, env: dict[str, str], redis_pid: int) -> dict:
    from incidents.statuspage.cache import invalidate

    page_id, monitor_id = seed(args.components)
    print(f"seeded page {page_id}: {args.components} components in {GROUPS} groups")
    stack = start_stack(env, logs, monitor_id, redis_pid)
    result: dict[str, Any] = {"page_id": page_id, "uncached": {}, "cached_one_at_a_time": {}}
    runs = []
    try:
        result["sizes"] = first_requests(stack.servers["worker"], page_id)
        first_requests(stack.servers["gunicorn"], page_id)
        result["db_queries_per_hit"] = queries_per_hit()
        result["in_process"] = in_process(page_id, args.render_rounds)
        inline = stack.servers["gunicorn"].port
        for name, path in PATHS.items():
            print(f"{name}: uncached, then cached, one request at a time")
            result["uncached"][name] = one_at_a_time(
                inline, path, args.uncached_seconds, 10, lambda: invalidate(page_id)
            )
            result["cached_one_at_a_time"][name] = one_at_a_time(
                inline, path, args.uncached_seconds / 2, 100, None
            )
        for n in range(args.rounds):
            for load in LOADS[n % len(LOADS) :] + LOADS[: n % len(LOADS)]:  # rotated
                runs.append(run_load(args, stack, load) | {"round": n + 1})
    finally:
        stack.stop()
    result["runs"] = runs
    result["cached"] = {
        load.name: medians([r for r in runs if r["load"] == load.name]) for load in LOADS
    }
    result["trouble"] = stack.trouble()
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One load's wrk rounds: medians of the rates, latencies and CPU; sums of the failures;
    the freshness of every change of every round together."""

    def median(get: Callable[[dict[str, Any]], float | None]) -> float | None:
        values = [v for v in map(get, runs) if v is not None]
        return statistics.median(values) if values else None

    fresh = [s for r in runs for s in r["fresh_after_s"]]
    changes = sum(r["changes"] for r in runs)
    worker_cpu = sum(r["worker_cpu_s"] for r in runs)
    return {
        "rounds": len(runs),
        "per_s": median(lambda r: r["per_s"]),
        "answered_2xx": sum(r["answered_2xx"] for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "latency_ms": {
            p: median(lambda r, p=p: r["latency_ms"][p]) for p in ("p50", "p90", "p99", "max")
        },
        "cpu_ms_per_request": {
            group: median(lambda r, g=group: r["cpu_ms_per_request"][g])
            for group in runs[0]["cpu_ms_per_request"]
        },
        "worker_cpu_s_per_run": median(lambda r: r["worker_cpu_s"]),
        "worker_cpu_ms_per_change": worker_cpu * 1000 / changes if changes else None,
        "changes": changes,
        "late_changes": sum(r["late_changes"] for r in runs),
        "fresh_after_s": percentiles(fresh, (50, 90)) | {"max": max(fresh)} if fresh else None,
        "machine_busy_cores": median(lambda r: r["machine_busy_cores"]),
        "others_cores": median(lambda r: r["others_cores"]),
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for name in ("page", CHANGING["worker"]):
        load = result["cached"][name]
        per_s, p99 = load["per_s"], load["latency_ms"]["p99"]
        checks += [
            (f"{name}: req/s >= {TARGET_PER_S:,.0f}", per_s, per_s >= TARGET_PER_S),
            (f"{name}: p99 < {TARGET_P99_MS:g} ms", p99, p99 < TARGET_P99_MS),
        ]
    failures = sum(r["non_2xx"] + r["socket_errors"] for r in result["cached"].values())
    checks.append(("no non-2xx answers or socket errors", failures, failures == 0))
    late = sum(r["late_changes"] for r in result["cached"].values())
    checks.append((f"every change shown within {FRESHNESS_LIMIT:g} s", late, late == 0))
    return [{"target": t, "value": v, "pass": ok} for t, v, ok in checks]


def report(result: dict[str, Any]) -> None:
    p = result["params"]
    print(
        f"\nstatus page: {p['components']} components in {GROUPS} groups, 90 days of hourly "
        f"rollups; gunicorn {p['gunicorn']} (processes x threads); wrk -t{p['threads']} "
        f"-c{p['connections']} for {fmt(p['duration'])} s per run, {p['rounds']} round(s); a "
        f"change every {fmt(p['invalidate_every'])} s in the changing runs; refresh grace "
        f"{fmt(p['grace'])} s; load {result['host']['loadavg_1_5_15']} on "
        f"{result['host']['cpus']} cores\n"
    )
    for run in result["runs"]:
        lat = run["latency_ms"]
        print(
            f"round {run['round']} {run['load']:>34}: {fmt(run['per_s'])} req/s, p50 "
            f"{fmt(lat['p50'])} p99 {fmt(lat['p99'])} max {fmt(lat['max'])} ms, "
            f"{run['non_2xx']:,} non-2xx, {run['socket_errors']:,} socket errors; machine busy "
            f"{fmt(run['machine_busy_cores'])} cores, of which others {fmt(run['others_cores'])}"
        )
    print()
    report_loads(result)
    print()
    report_one_at_a_time(result)
    print()
    print("CPU ms per request over the wrk runs (medians), and the machine's busy cores")
    groups = list(result["cached"]["page"]["cpu_ms_per_request"])
    cpu_rows = []
    for name, run in result["cached"].items():
        used = [run["cpu_ms_per_request"][g] for g in groups]
        cpu_rows.append([name, *used, run["machine_busy_cores"], run["others_cores"]])
    print_table(["", *groups, "busy cores", "others' cores"], cpu_rows)
    print()
    print_verdict(result["targets"], result["trouble"], HOW_TO_READ)


def report_loads(result: dict[str, Any]) -> None:
    rows = []
    for name, load in result["cached"].items():
        lat, fresh = load["latency_ms"], load["fresh_after_s"] or {}
        rows.append(
            [name, load["per_s"], lat["p50"], lat["p99"], lat["max"],
             load["non_2xx"] + load["socket_errors"], load["changes"], fresh.get("p50"),
             fresh.get("max"), load["worker_cpu_s_per_run"], load["worker_cpu_ms_per_change"]]
        )  # fmt: skip
    headers = ["wrk runs (medians)", "req/s", "p50 ms", "p99 ms", "max ms", "failed",
               "changes", "fresh after p50 s", "max s", "worker CPU s", "ms/change"]  # fmt: skip
    print_table(headers, rows)
    inline, worker = (result["cached"][CHANGING[k]] for k in ("gunicorn", "worker"))
    quiet = result["cached"]["page"]

    def times(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
        get = (lambda r: r["per_s"]) if key == "req/s" else (lambda r: r["latency_ms"][key])
        return f"{key} x{fmt(ratio(get(a), get(b)))}"

    print(
        "\nwhile the page changes, rendering in the worker instead of gunicorn: "
        + ", ".join(times(worker, inline, key) for key in ("req/s", "p99", "max"))
        + "; changing vs quiet (worker): "
        + ", ".join(times(worker, quiet, key) for key in ("req/s", "p99"))
    )


def report_one_at_a_time(result: dict[str, Any]) -> None:
    rows = []
    for name in PATHS:
        one, miss = result["cached_one_at_a_time"][name], result["uncached"][name]
        size = result["sizes"][name]["bytes_sent"]
        for label, run in (("cached", one), ("uncached", miss)):
            lat = run["latency_ms"]
            rows.append(
                [f"{name} {label}, one at a time", run["per_s"], lat["p50"], lat["p99"],
                 run["non_2xx"], run["requests"], size,
                 result["db_queries_per_hit"][name] if label == "cached" else ""]
            )  # fmt: skip
    print_table(
        ["", "req/s", "p50 ms", "p99 ms", "non-2xx", "requests", "bytes", "DB queries/hit"], rows
    )
    for name in PATHS:
        one = result["cached_one_at_a_time"][name]["latency_ms"]["p50"]
        miss = result["uncached"][name]["latency_ms"]["p50"]
        print(
            f"{name}: a cache miss takes {fmt(miss / one)}x as long as a hit (p50, one at a time)"
        )
    work = result["in_process"]
    print(
        f"in process, the page ({work['rounds']} rounds, medians): page_snapshot "
        f"{fmt(work['snapshot_ms'])} ms ({work['queries']} queries) + render "
        f"{fmt(work['render_ms'])} ms + gzip {fmt(work['gzip_ms'])} ms = "
        f"{fmt(work['total_ms'])} ms, {fmt(work['per_s_one_core'])} renders/s on one core"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The status page's throughput under gunicorn.")
    add = parser.add_argument
    add("--duration", type=float, default=30.0, help="seconds of each wrk run (default 30)")
    add("--connections", type=int, default=16,
        help="wrk connections (default 16: twice gunicorn's default 2 x 4 threads)")  # fmt: skip
    add("--threads", type=int, default=2, help="wrk threads (default 2)")
    add("--rounds", type=int, default=1, help="runs of each load, rotated; medians (default 1)")
    add("--invalidate-every", type=float, default=5.0,
        help="seconds between status changes in the changing runs (default 5)")  # fmt: skip
    add("--components", type=int, default=50, help="components on the page (default 50)")
    add("--uncached-seconds", type=float, default=6.0,
        help="seconds of uncached requests per URL, at least 10 requests (default 6)")  # fmt: skip
    add("--render-rounds", type=int, default=3, help="in-process renders timed (default 3)")
    add("--web-concurrency", type=int, help="gunicorn workers (default: gunicorn.conf.py's)")
    add("--web-threads", type=int, help="threads per gunicorn worker (default: its)")
    add("--output", type=Path, help="JSON path (default bench/results/status-page-<time>.json)")
    add("--keep-logs", action="store_true", help="keep the processes' logs (kept on failure)")
    args = parser.parse_args(argv)
    if args.connections < args.threads or args.duration < 1 or args.components < 1:
        parser.error("need --connections >= --threads, --duration >= 1, --components >= 1")
    if args.uncached_seconds <= 0 or args.render_rounds < 1 or args.rounds < 1:
        parser.error("need --uncached-seconds > 0, --render-rounds >= 1 and --rounds >= 1")
    if not 0.5 <= args.invalidate_every <= args.duration:
        parser.error("need 0.5 <= --invalidate-every <= --duration")
    return args


def gunicorn_mix(env: dict[str, str]) -> str:
    """processes x threads as monitorsite/gunicorn.conf.py reads them from `env`."""
    code = "import runpy; c = runpy.run_path('monitorsite/gunicorn.conf.py'); "
    code += "print(f\"{c['workers']}x{c['threads']}\")"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_DIR, env=env, capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


def run(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    find_wrk()
    env = stack_env(logs / "data", args.web_concurrency, args.web_threads)
    print(f"preparing {DATABASE} (Redis dbs {CACHE_DB} cache, {BROKER_DB} broker)")
    prepare_database(PLACE, env)
    redis_pid = flush_redis(PLACE)
    # Always: a manifest collected before a stylesheet existed would make the page a 500.
    manage(env, "collectstatic", "--noinput", "-v", "0")
    setup_django(env)
    try:
        result = measure(args, logs, env, redis_pid)
    finally:
        with contextlib.suppress(SystemExit):
            flush_redis(PLACE)
    from django.conf import settings

    result["targets"] = targets(result)
    result["params"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result["params"] |= {
        "gunicorn": gunicorn_mix(env),
        "grace": settings.STATUS_PAGE_REFRESH_GRACE,
        "database": DATABASE,
        "redis_dbs": {"cache": CACHE_DB, "broker": BROKER_DB},
        "host": HOST,
    }
    return result


def main() -> int:
    args = parse_args()
    started = datetime.now(UTC).isoformat()
    signal.signal(signal.SIGTERM, interrupted)
    logs = Path(tempfile.mkdtemp(prefix="watchpost-status-"))
    ok = False
    try:
        with exclusive(PLACE, wait=300):
            result = run(args, logs)
        result["params"]["started"] = started
        result["host"] = host_info()
        report(result)
        path = write_results("status-page", result, args.output)
        print(f"\nwritten to {path}")
        ok = not result["trouble"]
        if not ok:
            print("FAILED: gunicorn or the worker logged errors (LOG lines above)")
    except Crashed as exc:
        print(f"CRASHED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; gunicorn and the worker were stopped", file=sys.stderr)
        return 130
    finally:
        drop_logs(logs, ok, args.keep_logs)
    return 0 if ok else 1


if __name__ == "__main__":
    os.chdir(REPO_DIR)
    sys.exit(main())
