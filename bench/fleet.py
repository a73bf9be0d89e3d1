"""Fleet benchmark: the real Watchpost stack probing N HTTP monitors on loopback.

Starts a target farm on 127.0.0.1 (nginx if installed, else bench/target_farm.py),
creates N HTTP monitors (each on its own path of the farm) in a dedicated
PostgreSQL database with Redis as broker and cache, runs one `celery beat`, one
dispatcher worker (`dispatch`, concurrency 1), one core worker (`notify,default`:
status changes, incidents, pages; a pool process per CPU) and the probe workers (`probes`) as
subprocesses, as docker-compose.yml does, lets them warm up, then measures a window:
probes/s against the design rate, missed and late checks, scheduling lag, CPU
per 1,000 probes of each process group, peak RSS, and what each result costs
to store. Then, unless --no-paging, the paging phase (bench/paging.py): 1 % of
the targets answer HTTP 500, and a webhook receiver in the bench times the page
each of those monitors sends through the stack. Everything it starts is
stopped at the end, also on Ctrl-C.

    make bench BENCH_ARGS="--monitors 2000 --window 60"
    .venv/bin/python bench/fleet.py [--monitors 10000] [--interval 30] [--warmup 60] [--window 600]
    .venv/bin/python bench/fleet.py --smoke   # ~1 min; exits non-zero if nothing landed

`--design periodic-task` runs the design Watchpost rejected instead (one
django-celery-beat PeriodicTask per monitor, bench/periodic_probe.py);
`--design dispatcher --design periodic-task --monitors 1000,10000` runs every
combination one after another and prints them side by side; so does
`--variant aiohttp:PROBE_HTTP_CLIENT=aiohttp --variant lean:PROBE_HTTP_CLIENT=lean`,
each variant's settings added to the stack's environment for its run.

Prints a table and writes bench/results/fleet-<timestamp>.json (or --output).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paging
from common import (
    BENCH_DIR,
    REPO_DIR,
    Crashed,
    PgBackends,
    children,
    drop_logs,
    fmt,
    free_port,
    host_info,
    interrupted,
    machine_busy_seconds,
    nginx_conf,
    percentiles,
    postmaster_pid,
    print_table,
    print_verdict,
    tail,
    tree_cpu_seconds,
    wait_port,
    write_results,
)

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
REDIS_SERVER = "redis://127.0.0.1:6379"
LATE_MS = 250.0
# The bench's monitors; the app may add monitors of its own (e.g. of Watchpost itself).
OURS = "m.kind = 'http' AND m.name LIKE 'fleet %%'"
MAX_CPU_PER_1000 = 1.0
DESIGNS = ("dispatcher", "periodic-task")
WATCHPOST_GROUPS = ("beat", "dispatcher", "core worker", "probe workers")
GROUPS = (*WATCHPOST_GROUPS, "postgres", "postgres (bench db)", "redis", "target farm")
# Stack processes may log these only if something went wrong.
TROUBLE = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|WorkerLostError")

HOW_TO_READ = f"""\
How to read this: everything above was measured side by side in one run on a
shared, noisy machine; trust ratios (which group costs what, per 1,000 probes)
more than absolute figures, and compare runs only with their "machine busy"
and load figures in view. "probes/s" counts results whose slot (scheduled_at)
falls in the window; "expected" is monitors / interval. A missed check is a
slot on a monitor's grid (its first result's scheduled_at + k x interval) inside
the window with no result; a late one started more than {LATE_MS:g} ms after its
slot. Lag is started_at - scheduled_at over the window's results. CPU is
utime + stime from /proc of each group's whole process tree (children reaped
included) between the window's start and end; "cores" is that over the window
length. "postgres" is the whole server (every database's backends and its
background writers); "postgres (bench db)" only the backends connected to the
bench database. Redis and PostgreSQL serve other users of this machine too, so
their figures carry their noise. "Watchpost" is beat + dispatcher + core worker
+ probe workers; targets are judged on it. Peak RSS is VmHWM summed over the group's
processes (shared memory, e.g. PostgreSQL's buffers, counted once per process).
"paging" comes after the window: each flipped monitor's first page at the
bench's webhook receiver, minus when the result that made it down was recorded
(its status change), minus that result's slot (adds the probe and its batch),
and minus the flip (adds waiting for the failing slots: one to two intervals)."""


@dataclass(frozen=True)
class Place:
    """Where one kind of run keeps its data, so a smoke run and a full run never collide."""

    database: str
    broker_db: int
    cache_db: int

    @property
    def database_url(self) -> str:
        return f"{PG_SERVER}/{self.database}"


FULL = Place("watchpost_bench", broker_db=12, cache_db=11)
SMOKE = Place("watchpost_bench_smoke", broker_db=10, cache_db=9)


# --- Processes ------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    group: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class Stack:
    """Every process the bench starts, each in its own session, so it can be ended whole."""

    logs: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, group: str, cmd: list[str]) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                cmd,
                cwd=REPO_DIR,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, group, popen, log)
        self.procs.append(proc)
        return proc

    def roots(self, group: str) -> list[int]:
        return [proc.pid for proc in self.procs if proc.group == group]

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is not None:
                raise Crashed(
                    f"{proc.name} exited with {proc.popen.returncode}; "
                    f"its log ends:\n{tail(proc.log)}"
                )

    def stop(self) -> None:
        """SIGTERM each main process (Celery's warm shutdown), then the groups, then SIGKILL."""
        for proc in reversed(self.procs):  # beat first: nothing new is sent while workers stop
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        wait_all(self.procs, 20)
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 0)):
            for proc in self.procs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)  # pool children and forks share the group
            time.sleep(grace)
        for proc in self.procs:
            proc.popen.wait()


def wait_all(procs: list[Proc], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(max(0.0, deadline - time.monotonic()))


# --- Target farm ------------------------------------------------------------------

NGINX_SERVER = """\
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            default_type application/json;
            # The paging phase makes a target fail by writing a marker file for its path.
            if (-f {fail_dir}$uri) {{
                return 500 '{{"status":"failing"}}';
            }}
            return 200 '{{"status":"ok"}}';
        }}
    }}
"""


def start_farm(stack: Stack, processes: int, fail_dir: Path) -> tuple[str, str]:
    """Start the targets; returns (base URL, a description of what serves them).

    A target answers HTTP 500 while `fail_dir` holds a file at its path (see fail_targets).
    """
    nginx = shutil.which("nginx")
    port = free_port()
    if nginx:
        farm_dir = stack.logs / "nginx"
        farm_dir.mkdir()
        conf = farm_dir / "nginx.conf"
        server = NGINX_SERVER.format(port=port, fail_dir=fail_dir)
        conf.write_text(nginx_conf(farm_dir, server, processes))
        stack.start("target-farm", "target farm", [nginx, "-p", str(farm_dir), "-c", str(conf)])
        what = f"nginx ({nginx}, {processes} worker process(es))"
    else:
        script = str(BENCH_DIR / "target_farm.py")
        cmd = [sys.executable, script, "--port", str(port), "--processes", str(processes)]
        stack.start("target-farm", "target farm", [*cmd, "--fail-dir", str(fail_dir)])
        what = f"asyncio target farm (bench/target_farm.py, {processes} process(es), SO_REUSEPORT)"
    wait_port(port, stack.check_alive, what="the target farm")
    return f"http://127.0.0.1:{port}", what


def monitor_name(n: int) -> str:
    return f"fleet {n:06d}"  # matched by OURS


def target_path(n: int) -> str:
    """The path fleet monitor n probes on the farm."""
    return f"/m/{n}"


def fail_targets(fail_dir: Path, targets: list[int]) -> dict[int, float]:
    """Make these targets answer HTTP 500 from now on; returns when each started (time.time())."""
    started = {}
    for n in targets:
        marker = fail_dir / target_path(n).lstrip("/")
        marker.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        marker.touch()
        started[n] = time.time()
    return started


# --- Database and Redis ---------------------------------------------------------------


def stack_env(place: Place, data_dir: Path, probe_async: int | None, extra: list[str]) -> dict:
    drop = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SENTRY_DSN", "MAKEFLAGS"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MAKE")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "monitorsite.settings",
        "DATABASE_URL": place.database_url,
        "CELERY_BROKER_URL": f"{REDIS_SERVER}/{place.broker_db}",
        "REDIS_URL": f"{REDIS_SERVER}/{place.cache_db}",
        "WATCHPOST_DATA_DIR": str(data_dir),
        "SECRET_KEY": secrets.token_urlsafe(40),
        "LOG_LEVEL": "INFO",
        # bench/periodic_probe.py, for --design periodic-task
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
    }
    if probe_async is not None:
        env["PROBE_CONCURRENCY"] = str(probe_async)
    for item in extra:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def prepare_database(place: Place, env: dict[str, str]) -> None:
    """Create the database if missing, migrate it, and empty every Watchpost table."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [place.database]
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(place.database)))
    except psycopg.OperationalError as exc:
        raise SystemExit(f"PostgreSQL at {PG_SERVER} is not reachable: {exc}") from exc
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"manage.py migrate failed:\n{done.stdout}{done.stderr}")
    with psycopg.connect(place.database_url, autocommit=True, connect_timeout=5) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
                "tablename ~ '^(checks|alerts|incidents|monitorsite)_'"
            )
        ]
        # The beat schedule (django_celery_beat_*) is kept: a migration wrote it.
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(map(sql.Identifier, tables))
            )
        )


def flush_redis(place: Place) -> int:
    """Empty the broker and cache databases; returns the redis-server's pid."""
    import redis

    try:
        for db in (place.broker_db, place.cache_db):
            redis.Redis.from_url(f"{REDIS_SERVER}/{db}").flushdb()
        return int(redis.Redis.from_url(REDIS_SERVER).info("server")["process_id"])
    except redis.RedisError as exc:
        raise SystemExit(f"Redis at {REDIS_SERVER} is not reachable: {exc}") from exc


@contextlib.contextmanager
def exclusive(place: Place, wait: float) -> Iterator[None]:
    """One fleet bench per database at a time: a second waits rather than wiping the first."""
    path = Path(tempfile.gettempdir()) / f"watchpost-fleet-{place.database}.lock"
    with path.open("w") as handle:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"another fleet bench holds {path}; gave up") from None
                if not told:
                    print(f"waiting for another fleet bench on {place.database} ({path})")
                    told = True
                time.sleep(2)
        yield


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(REPO_DIR))
    import django

    django.setup()


def seed_monitors(count: int, interval: int, timeout: float, base_url: str) -> None:
    from checks.models import Monitor, Region

    Region.default()
    monitors = [
        Monitor(
            name=monitor_name(n),
            kind=Monitor.Kind.HTTP,
            target=base_url + target_path(n),
            interval=interval,
            timeout=timeout,
        )
        for n in range(count)
    ]
    monitors[0].full_clean()  # the bench must not measure monitors the admin would refuse
    Monitor.objects.bulk_create(monitors, batch_size=2000)


def prepare_schedule(design: str, interval: int) -> None:
    """Beat's schedule for the design: the dispatcher's tick, or one entry per monitor.

    Either way the other design's entries go: a run stopped half-way must not
    leave ten thousand entries (or a disabled tick) to the next one.
    """
    from django.utils import timezone
    from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks
    from periodic_probe import TASK

    from checks.models import Monitor, next_slot

    PeriodicTask.objects.filter(task=TASK).delete()
    periodic = design == "periodic-task"
    PeriodicTask.objects.filter(task="checks.tasks.dispatch_due").update(enabled=not periodic)
    if periodic:
        every, _ = IntervalSchedule.objects.get_or_create(
            every=interval, period=IntervalSchedule.SECONDS
        )
        # Each entry starts on its monitor's slot, as the dispatcher would
        # probe it, after the stack has had time to start.
        start = timezone.now() + timedelta(seconds=15)
        PeriodicTask.objects.bulk_create(
            [
                PeriodicTask(
                    name=f"fleet probe {name}",
                    task=TASK,
                    interval=every,
                    args=json.dumps([monitor_id, interval]),
                    queue="probes",
                    start_time=next_slot(monitor_id, interval, start),
                    # Like a dispatcher batch: stale after one interval.
                    expire_seconds=interval,
                )
                for monitor_id, name in Monitor.objects.filter(name__startswith="fleet ")
                .order_by("id")
                .values_list("id", "name")
            ],
            batch_size=2000,
        )
    PeriodicTasks.update_changed()  # bulk writes send no signal: tell beat to reload


def query(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def close_db() -> None:
    from django.db import connection

    connection.close()


# --- Sampling /proc -----------------------------------------------------------------


def tree(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children(current))
    return found


def peak_rss_mb(pids: list[int]) -> tuple[float, float]:
    """VmHWM summed over the processes, and the largest one, in MB."""
    peaks = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return (sum(peaks), max(peaks)) if peaks else (0.0, 0.0)


@dataclass
class Sampler:
    """CPU of each group's process tree, and of the bench database's backends (polled
    once a second: CONN_MAX_AGE recycles them)."""

    roots: dict[str, list[int]]
    backends: PgBackends

    def groups(self) -> dict[str, float]:
        totals = tree_cpu_seconds([pid for pids in self.roots.values() for pid in pids])
        return {group: sum(totals[p] for p in pids) for group, pids in self.roots.items()}

    def poll(self, starting: bool = False) -> None:
        self.backends.poll(starting)


# --- The run --------------------------------------------------------------------------


def start_stack(stack: Stack, args: argparse.Namespace) -> None:
    celery = [sys.executable, "-m", "celery", "-A", "monitorsite"]
    for n in range(1, args.probe_workers + 1):
        cmd = [*celery, "worker", "-Q", "probes", "-c", str(args.probe_concurrency)]
        cmd += ["-n", f"fleet-probes-{n}@%h", "--loglevel", "INFO"]
        if args.design == "periodic-task":
            cmd += ["--include", "periodic_probe"]  # the rejected design's task (bench/)
        stack.start(f"probe-worker-{n}", "probe workers", cmd)
    # As docker-compose.yml: the one-second tick alone, so no long task delays it.
    cmd = [*celery, "worker", "-Q", "dispatch", "-c", "1"]
    stack.start("dispatcher", "dispatcher", [*cmd, "-n", "fleet-dispatch@%h", "--loglevel", "INFO"])
    # Its pool is celery's default (a process per CPU), as docker-compose.yml's worker-core.
    cmd = [*celery, "worker", "-Q", "notify,default"]
    stack.start("core-worker", "core worker", [*cmd, "-n", "fleet-core@%h", "--loglevel", "INFO"])
    stack.start("beat", "beat", [*celery, "beat", "--loglevel", "INFO"])


class Vacuum(threading.Thread):
    """VACUUM (and ANALYZE) the tables each probe rewrites every few seconds, as autovacuum would.

    Only where the server runs with autovacuum off (as this machine's does): a
    production server vacuums them, and without it each probe leaves dead row
    versions and index entries that the dispatcher's claim then walks, so a
    long or large run would measure a bloating table. Its backend is one of the
    bench database's, so its CPU counts in "postgres (bench db)".
    """

    TABLES = (
        "checks_monitor",
        "checks_regionstate",
        "monitorsite_metricvalue",
        "monitorsite_heartbeat",
    )

    def __init__(self, url: str, every: float) -> None:
        super().__init__(name="bench-vacuum", daemon=True)
        self.url, self.every = url, every
        self.stopped = threading.Event()
        self.runs = 0

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            tables = [
                t for t in self.TABLES if conn.execute("SELECT to_regclass(%s)", [t]).fetchone()[0]
            ]
            while not self.stopped.wait(self.every):
                conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
                self.runs += 1

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=60)


def autovacuum_off() -> bool:
    return query("SELECT current_setting('autovacuum')")[0][0] == "off"


def sleep_watching(stack: Stack, seconds: float, sampler: Sampler | None = None) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        stack.check_alive()
        if sampler is not None:
            sampler.poll()


def wait_first_result(stack: Stack, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        stack.check_alive()
        if query("SELECT EXISTS (SELECT 1 FROM checks_proberesult)")[0][0]:
            return time.monotonic() - started
        time.sleep(0.5)
    raise Crashed(f"no probe result landed within {seconds:g} s of starting the stack")


def result_count(before: datetime | None = None) -> int:
    if before is None:
        return query("SELECT count(*) FROM checks_proberesult")[0][0]
    return query("SELECT count(*) FROM checks_proberesult WHERE scheduled_at < %s", [before])[0][0]


def settle(stack: Stack, end: datetime, limit: float) -> float:
    """Wait until results of the window's last slots stop landing; returns the wait."""
    started, previous, steady = time.monotonic(), -1, 0
    while time.monotonic() - started < limit and steady < 3:
        time.sleep(1)
        stack.check_alive()
        count = result_count(end)
        steady = steady + 1 if count == previous else 0
        previous = count
    return time.monotonic() - started


@dataclass
class Window:
    start: datetime
    end: datetime
    cpu: dict[str, float]
    backend_cpu: float
    busy_cores: float
    rows_stored: int
    rss: dict[str, tuple[float, float]]
    settle_s: float = 0.0

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def measure(stack: Stack, sampler: Sampler, seconds: float) -> Window:
    rows_before = result_count()
    close_db()  # the bench's own backend stays out of the window
    sampler.poll(starting=True)
    cpu_before, busy_before = sampler.groups(), machine_busy_seconds()
    start = datetime.now(UTC)
    sleep_watching(stack, seconds, sampler)
    cpu_after, busy_after = sampler.groups(), machine_busy_seconds()
    end = datetime.now(UTC)
    sampler.poll()
    rss = {
        group: peak_rss_mb([p for r in roots for p in tree(r)])
        for group, roots in sampler.roots.items()
    }
    rss["postgres (bench db)"] = peak_rss_mb(list(sampler.backends.last))
    elapsed = (end - start).total_seconds()
    return Window(
        start=start,
        end=end,
        cpu={g: cpu_after[g] - cpu_before[g] for g in cpu_before},
        backend_cpu=sampler.backends.cpu_seconds(),
        busy_cores=(busy_after - busy_before) / elapsed,
        rows_stored=result_count() - rows_before,
        rss=rss,
    )


# --- Figures -------------------------------------------------------------------------


def window_results(window: Window) -> list[tuple[int, datetime, datetime, str]]:
    return query(
        "SELECT r.monitor_id, r.scheduled_at, r.started_at, r.outcome "
        "FROM checks_proberesult r JOIN checks_monitor m ON m.id = r.monitor_id "
        f"WHERE {OURS} AND r.scheduled_at >= %s AND r.scheduled_at < %s",
        [window.start, window.end],
    )


def grid_figures(window: Window, rows: list[tuple[int, datetime, datetime, str]]) -> dict:
    """Slots each monitor's grid puts in the window, and which of them have no result.

    The grid starts at the monitor's first result and steps by its interval; a
    monitor with no result at all misses every slot the window holds.
    """
    # Two queries joined here: as one, a planner without statistics (no
    # autovacuum, no ANALYZE) may run the aggregate once per monitor.
    firsts = dict(
        query("SELECT monitor_id, min(scheduled_at) FROM checks_proberesult GROUP BY monitor_id")
    )
    monitors = query(f"SELECT m.id, m.interval FROM checks_monitor m WHERE {OURS}")
    grid = {monitor_id: (interval, firsts.get(monitor_id)) for monitor_id, interval in monitors}
    seen: dict[int, set[int]] = defaultdict(set)
    off_grid = 0
    for monitor_id, scheduled_at, _, _ in rows:
        interval, first = grid[monitor_id]
        steps = (scheduled_at - first).total_seconds() / interval
        off_grid += abs(steps - round(steps)) * interval > 0.001
        seen[monitor_id].add(round(steps))
    expected = missed = never = 0
    for monitor_id, (interval, first) in grid.items():
        if first is None:
            never += 1
            slots = int(window.seconds // interval)
            expected, missed = expected + slots, missed + slots
            continue
        k = max(0, math.ceil((window.start - first).total_seconds() / interval))
        while (slot := first + timedelta(seconds=k * interval)) < window.end:
            if slot >= window.start:
                expected += 1
                missed += k not in seen[monitor_id]
            k += 1
    return {
        "expected_slots": expected,
        "missed": missed,
        "off_grid": off_grid,
        "monitors_never_probed": never,
    }


def database_state() -> dict[str, Any]:
    """Server settings that change these figures, and how bloated the hot tables got."""
    names = ("server_version", "autovacuum", "shared_buffers", "synchronous_commit", "fsync")
    settings = dict(
        query("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(names)])
    )
    tables = {
        name: {"live": live, "dead": dead}
        for name, live, dead in query(
            "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relname = "
            "ANY(%s)",
            [["checks_monitor", "checks_regionstate", "checks_proberesult"]],
        )
    }
    return {"settings": settings, "tables": tables}


def lag_timeline(window: Window, rows: list[tuple[int, datetime, datetime, str]]) -> list[dict]:
    """Lag by tenth of the window: a backlog left by the warm-up drains; a steady one does not."""
    step = window.seconds / 10
    buckets: list[list[float]] = [[] for _ in range(10)]
    for _, scheduled, started, _ in rows:
        n = min(9, int((scheduled - window.start).total_seconds() // step))
        buckets[n].append((started - scheduled).total_seconds() * 1000)
    return [
        {
            "from_s": round(n * step, 1),
            "results": len(lags),
            **{k: round(v, 1) for k, v in percentiles(lags, (50, 99)).items()},
            "max": round(max(lags), 1) if lags else None,
        }
        for n, lags in enumerate(buckets)
    ]


def figures(window: Window, args: argparse.Namespace) -> dict[str, Any]:
    rows = window_results(window)
    lags = [(started - scheduled).total_seconds() * 1000 for _, scheduled, started, _ in rows]
    lag = {k: round(v, 1) for k, v in percentiles(lags, (50, 95, 99)).items()}
    lag["max"] = round(max(lags), 1) if lags else None
    achieved = len(rows)
    size, total_rows = query(
        "SELECT pg_total_relation_size('checks_proberesult'), count(*) FROM checks_proberesult"
    )[0]
    probes = {
        "expected_per_s": args.monitors / args.interval,
        "achieved_per_s": achieved / window.seconds,
        "expected": round(args.monitors * window.seconds / args.interval),
        "achieved": achieved,
        **grid_figures(window, rows),
        "late": sum(ms > LATE_MS for ms in lags),
        "outcomes": dict(Counter(outcome for *_, outcome in rows)),
    }
    return {
        "probes": probes,
        "lag_ms": lag,
        "lag_timeline_ms": lag_timeline(window, rows),
        "database": database_state(),
        "cpu": cpu_figures(window, achieved),
        "storage": {
            "rows_per_s": window.rows_stored / window.seconds,
            "table_bytes": size,
            "rows": total_rows,
            "bytes_per_result": size / total_rows if total_rows else None,
        },
    }


def cpu_figures(window: Window, probes: int) -> dict[str, Any]:
    cpu = dict(window.cpu)
    cpu["postgres (bench db)"] = window.backend_cpu
    cpu["Watchpost"] = sum(cpu[g] for g in WATCHPOST_GROUPS)

    def figures_of(group: str) -> dict[str, Any]:
        return {
            "cpu_s": round(cpu[group], 2),
            "per_1000_probes": cpu[group] * 1000 / probes if probes else None,
            "cores": cpu[group] / window.seconds,
        }

    groups = {
        group: figures_of(group)
        | {
            "peak_rss_mb_sum": round(window.rss[group][0], 1),
            "peak_rss_mb_max": round(window.rss[group][1], 1),
        }
        for group in GROUPS
    }
    return {
        "groups": groups,
        "watchpost": figures_of("Watchpost"),
        "machine_busy_cores": window.busy_cores,
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    own = result["cpu"]["watchpost"]["per_1000_probes"]
    p99 = result["lag_ms"]["p99"]
    checks = [
        ("zero missed checks", result["probes"]["missed"], "= 0", result["probes"]["missed"] == 0),
        (
            f"p99 lag <= {LATE_MS:g} ms",
            p99,
            f"<= {LATE_MS:g}",
            not math.isnan(p99) and p99 <= LATE_MS,
        ),
        (
            f"Watchpost CPU <= {MAX_CPU_PER_1000:g} s / 1,000 probes",
            own,
            f"<= {MAX_CPU_PER_1000:g}",
            own is not None and own <= MAX_CPU_PER_1000,
        ),
    ]
    if result.get("paging") is not None:
        checks += paging_targets(result["paging"])
    return [{"target": t, "value": v, "limit": lim, "pass": ok} for t, v, lim, ok in checks]


def paging_targets(page: dict[str, Any]) -> list[tuple[str, Any, str, bool]]:
    """A flipped monitor never paged fails the latency target as well as the count."""
    p99, limit = page["latency_s"]["from_recorded"]["p99"], paging.MAX_LATENCY_S
    all_paged = not page["not_paged"]
    return [
        (
            f"failure-to-page p99 < {limit:g} s after the failing result is recorded",
            p99,
            f"< {limit:g}",
            all_paged and not math.isnan(p99) and p99 < limit,
        ),
        (
            "every flipped monitor paged, once",
            f"{page['paged']} of {page['flipped']} paged, {page['pages']} pages",
            "= flipped",
            all_paged and page["pages"] == page["flipped"],
        ),
    ]


def log_trouble(stack: Stack, sizes: dict[str, int]) -> list[str]:
    """Error lines the stack logged before it was told to stop."""
    found = []
    for proc in stack.procs:
        text = log_text(proc.log)[: sizes.get(proc.name, 0)].decode(errors="replace")
        found += [f"{proc.name}: {line}" for line in text.splitlines() if TROUBLE.search(line)]
    return found


def log_bytes(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def log_text(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""  # someone may have cleaned /tmp


def farm_requests(stack: Stack) -> int | None:
    answered = re.findall(r"answered (\d+) requests", tail(stack.logs / "target-farm.log", 10))
    return sum(map(int, answered)) if answered else None


# --- Output ---------------------------------------------------------------------------


def report(result: dict[str, Any]) -> None:
    params, cpu = result["params"], result["cpu"]
    print(
        f"\nfleet: {params['monitors']:,} HTTP monitors every {params['interval']} s; window "
        f"{result['window']['seconds']:.0f} s after {params['warmup']:g} s warm-up; "
        f"targets: {result['farm']}\n"
        f"probe workers: {params['probe_workers']} x celery worker -c "
        f"{params['probe_concurrency']} (PROBE_CONCURRENCY {params['probe_async'] or 'default'});"
        f" machine busy {fmt(cpu['machine_busy_cores'])} of {result['host']['cpus']} cores, "
        f"load {result['host']['loadavg_1_5_15']}\n"
    )
    report_probes(result)
    if result["paging"] is not None:
        report_paging(result["paging"])
    print()
    rows = [
        [group, v["cpu_s"], v["per_1000_probes"], v["cores"], v.get("peak_rss_mb_sum")]
        for group, v in [*cpu["groups"].items(), ("Watchpost (all four above)", cpu["watchpost"])]
    ]
    print_table(["group", "CPU s", "CPU s/1k probes", "cores", "peak RSS MB"], rows)
    print()
    print_verdict(result["targets"], result["trouble"], HOW_TO_READ)


def report_probes(result: dict[str, Any]) -> None:
    p, lag, store = result["probes"], result["lag_ms"], result["storage"]
    timeline = "  ".join(fmt(bucket["p99"]) for bucket in result["lag_timeline_ms"])
    print(
        f"probes/s        expected {fmt(p['expected_per_s'])}  achieved {fmt(p['achieved_per_s'])}"
        f"  ({p['achieved']:,} results, {p['expected_slots']:,} slots on the grids)\n"
        f"missed checks   {p['missed']:,}   late (> {LATE_MS:g} ms) {p['late']:,}   "
        f"never probed {p['monitors_never_probed']}   outcomes {p['outcomes']}\n"
        f"lag ms          p50 {fmt(lag['p50'])}  p95 {fmt(lag['p95'])}  p99 {fmt(lag['p99'])}"
        f"  max {fmt(lag['max'])}\n"
        f"lag p99 ms by tenth of the window: {timeline}\n"
        f"storage         {fmt(store['rows_per_s'])} result rows/s, "
        f"{fmt(store['bytes_per_result'])} bytes per stored result (incl. indexes, "
        f"{store['rows']:,} rows)"
    )
    if result["farm_requests_whole_run"] is not None:  # nginx keeps no count (no access log)
        print(f"target farm     answered {result['farm_requests_whole_run']:,} requests in the run")
    db = result["database"]
    dead = ", ".join(
        f"{t} {v['dead']:,} dead / {v['live']:,} live" for t, v in db["tables"].items()
    )
    print(f"row versions    {dead}")
    if db["settings"].get("autovacuum") == "off":
        vacuum = result["vacuum"]
        if vacuum["every_s"]:
            print(
                f"NOTE            autovacuum is off on this server: the bench vacuumed the hot "
                f"tables every {vacuum['every_s']:g} s ({vacuum['runs']} times), as it would"
            )
        else:
            print("NOTE            autovacuum is off on this server: the hot tables only bloat")


def report_paging(page: dict[str, Any]) -> None:
    others = ", ".join(f"{n} {event}" for event, n in page["other_events"].items()) or "none"
    print(
        f"paging          {page['flipped']} target(s) flipped to HTTP 500 after the window "
        f"(down after {page['failure_threshold']} failing results): {page['paged']} paged, "
        f"{len(page['not_paged'])} not paged, {page['pages']} pages ({page['duplicates']} "
        f"duplicate); other messages: {others}"
    )
    for key, since in (
        ("from_recorded", "failing result recorded"),
        ("from_slot", "its scheduled slot"),
        ("from_flip", "target started failing"),
    ):
        v = page["latency_s"][key]
        print(
            f"page s after {since + ':':25} p50 {fmt(v['p50'])}  p95 {fmt(v['p95'])}  "
            f"p99 {fmt(v['p99'])}  max {fmt(v['max'])}"
        )
    if page["not_paged"]:
        print(f"NOT PAGED       {', '.join(page['not_paged'][:10])}")


COMPARE_HOW_TO_READ = f"""\
How to read this: each row is one run of the whole stack, one after another on
this machine (each run's own figures are printed above it). The dispatcher
design is Watchpost's: beat fires one tick a second and a dispatcher claims due
monitors in batches. periodic-task is the design DESIGN.md rejects: one
django-celery-beat entry per monitor, firing a task that probes that monitor
(bench/periodic_probe.py, through the same services). Its slots are the same
grids; a run beat sends late is late, one later than an interval misses its
slot. Compare beat's cores and each design's CPU per 1,000 probes, missed and
late checks (> {LATE_MS:g} ms) and lag, within the table; the machine's load
changes between rows, so read each row's "busy" with it."""


def page_p99(result: dict[str, Any]) -> float | None:
    """Failure-to-page p99 after the failing result was recorded (None: no paging phase)."""
    page = result["paging"]
    return page["latency_s"]["from_recorded"]["p99"] if page is not None else None


def comparison(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the runs side by side; returns what the JSON holds."""
    rows = []
    for result in results:
        probes, lag, cpu, p = result["probes"], result["lag_ms"], result["cpu"], result["params"]
        groups = cpu["groups"]
        rows.append(
            {
                "design": " ".join(filter(None, [p["design"], p.get("variant")])),
                "monitors": result["params"]["monitors"],
                "expected_per_s": probes["expected_per_s"],
                "achieved_per_s": probes["achieved_per_s"],
                "missed": probes["missed"],
                "late": probes["late"],
                "lag_p50_ms": lag["p50"],
                "lag_p99_ms": lag["p99"],
                "beat_cores": groups["beat"]["cores"],
                "cpu_s_per_1000_probes": {
                    **{group: groups[group]["per_1000_probes"] for group in WATCHPOST_GROUPS},
                    "Watchpost": cpu["watchpost"]["per_1000_probes"],
                    "postgres (bench db)": groups["postgres (bench db)"]["per_1000_probes"],
                },
                "machine_busy_cores": cpu["machine_busy_cores"],
                "page_p99_s": page_p99(result),
            }
        )
    print("\nside by side (CPU in CPU-seconds per 1,000 probes)\n")
    print_table(
        ["design", "monitors", "expected/s", "achieved/s", "missed", "late", "lag p50 ms",
         "lag p99 ms", "beat cores", "beat", "dispatcher", "core worker", "probe workers",
         "Watchpost",
         "pg (bench db)", "busy", "page p99 s"],
        [
            [
                row["design"], row["monitors"], row["expected_per_s"], row["achieved_per_s"],
                row["missed"], row["late"], row["lag_p50_ms"], row["lag_p99_ms"],
                row["beat_cores"], *row["cpu_s_per_1000_probes"].values(),
                row["machine_busy_cores"], row["page_p99_s"],
            ]
            for row in rows
        ],
    )  # fmt: skip
    print()
    print(COMPARE_HOW_TO_READ)
    return {"comparison": rows, "runs": results}


# --- Main -------------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a count or counts like 1000,10000, got {text!r}"
        )
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The real stack probing a fleet on loopback.")
    add = parser.add_argument
    add("--smoke", action="store_true", help="~1 min: 200 monitors at 10 s, 10 s + 20 s, paging")
    add("--monitors", type=sizes, help="HTTP monitors, or several: 1000,10000 (default 10000)")
    add("--design", action="append", choices=DESIGNS, help="repeatable (default dispatcher)")
    add("--interval", type=int, help="seconds between checks (default 30; smoke 10)")
    add("--warmup", type=float, help="seconds after the first result (default 60; smoke 10)")
    add("--window", type=float, help="measured seconds (default 600; smoke 20)")
    add("--probe-workers", type=int, default=1, help="`celery worker -Q probes` processes")
    add("--probe-concurrency", type=int, help="prefork pool of each (default 12; smoke 4)")
    add("--probe-async", type=int, help="PROBE_CONCURRENCY (probes at once per batch)")
    add("--farm-processes", type=int, default=1, help="target farm processes (1-2)")
    add("--timeout", type=float, help="each monitor's timeout (default min(10, interval/2))")
    add("--env", action="append", default=[], metavar="KEY=VALUE", help="extra stack setting")
    add("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="repeatable: a run per variant, with these settings added to --env")  # fmt: skip
    add("--output", type=Path, help="JSON path (default bench/results/fleet-<timestamp>.json)")
    add("--keep-logs", action="store_true", help="keep the stack's logs (kept anyway on failure)")
    add("--vacuum-every", type=float, metavar="SECONDS",
        help="VACUUM the hot tables this often (default 10 if the server's autovacuum is off, "
        "else never; 0: never)")  # fmt: skip
    add("--no-paging", dest="paging", action="store_false",
        help="skip the paging phase (1%% of targets fail after the window)")  # fmt: skip
    args = parser.parse_args(argv)
    args.design = list(dict.fromkeys(args.design or ["dispatcher"]))
    defaults = ([200], 10, 10.0, 20.0, 4) if args.smoke else ([10_000], 30, 60.0, 600.0, 12)
    for name, value in zip(
        ("monitors", "interval", "warmup", "window", "probe_concurrency"), defaults, strict=True
    ):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.timeout is None:
        args.timeout = min(10.0, args.interval / 2)
    if args.interval < 10 or args.timeout >= args.interval:
        parser.error("--interval must be >= 10 s and --timeout below it")
    bad = [item for item in args.env if "=" not in item]
    if bad:
        parser.error(f"--env takes KEY=VALUE, got {bad}")
    args.variants = [variant(parser, text) for text in args.variant] or [(None, [])]
    return args


def variant(parser: argparse.ArgumentParser, text: str) -> tuple[str, list[str]]:
    """`--variant NAME:KEY=VALUE,KEY=VALUE`: a name for the table, and its settings."""
    name, _, settings = text.partition(":")
    pairs = [item for item in settings.split(",") if item]
    if not name or not pairs or any("=" not in item for item in pairs):
        parser.error(f"--variant takes NAME:KEY=VALUE[,KEY=VALUE], got {text!r}")
    return name, pairs


def run(args: argparse.Namespace, place: Place, logs: Path) -> dict[str, Any]:
    """One design at one fleet size (args.design, args.monitors): start, warm up, measure."""
    logs.mkdir(parents=True, exist_ok=True)
    extra = [*paging.settings_for(args.monitors), *args.env] if args.paging else args.env
    env = stack_env(place, logs / "data", args.probe_async, extra)
    prepare_database(place, env)
    redis_pid = flush_redis(place)
    setup_django(env)
    stack = Stack(logs, env)
    receiver = paging.PageReceiver()
    vacuum: Vacuum | None = None
    # Not under `logs` (private to this user): nginx's workers, which run as
    # another user when the bench runs as root, look the markers up.
    fail_dir = Path(tempfile.mkdtemp(prefix="watchpost-fleet-failing-"))
    fail_dir.chmod(0o755)
    try:
        base_url, farm = start_farm(stack, args.farm_processes, fail_dir)
        label = " ".join(filter(None, [args.design, getattr(args, "variant", None)]))
        print(f"{label}, {args.monitors:,} monitors; targets: {farm} at {base_url}")
        seed_monitors(args.monitors, args.interval, args.timeout, base_url)
        if args.paging:
            receiver.start()
            paging.seed(receiver.url, args.monitors)
        prepare_schedule(args.design, args.interval)
        if args.vacuum_every is None:
            args.vacuum_every = 10.0 if autovacuum_off() else 0.0
        if args.vacuum_every:
            vacuum = Vacuum(place.database_url, args.vacuum_every)
            vacuum.start()
        start_stack(stack, args)
        first = wait_first_result(stack, 120)
        print(f"stack up, first result after {first:.1f} s; warming up {args.warmup:g} s")
        sleep_watching(stack, args.warmup)
        roots = {g: stack.roots(g) for g in WATCHPOST_GROUPS}
        roots |= {"postgres": [postmaster_pid()], "redis": [redis_pid]}
        roots["target farm"] = stack.roots("target farm")
        sampler = Sampler(roots, PgBackends(roots["postgres"][0], place.database))
        print(f"measuring {args.window:g} s")
        window = measure(stack, sampler, args.window)
        window.settle_s = settle(stack, window.end, max(30.0, args.timeout + 10))
        paged = paging_phase(stack, receiver, fail_dir, args)
        sizes = {proc.name: log_bytes(proc.log) for proc in stack.procs}
    finally:
        # A second Ctrl-C or SIGTERM must not cut the stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        if vacuum is not None:
            vacuum.stop()
        receiver.stop()
        shutil.rmtree(fail_dir, ignore_errors=True)
        with contextlib.suppress(SystemExit):
            flush_redis(place)  # leave no queued batches or cache keys behind
        prepare_schedule("dispatcher", args.interval)  # the schedule as migrations left it
        close_db()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, interrupted)
    # With the stack stopped: an overloaded one must not starve these queries.
    result = figures(window, args)
    result["paging"] = paged
    result["window"] = {
        "start": window.start,
        "end": window.end,
        "seconds": window.seconds,
        "settle_s": round(window.settle_s, 1),
    }
    result["farm"] = farm
    result["vacuum"] = {"every_s": args.vacuum_every, "runs": vacuum.runs if vacuum else 0}
    result["farm_requests_whole_run"] = farm_requests(stack)
    result["trouble"] = log_trouble(stack, sizes)
    return result


def paging_phase(
    stack: Stack, receiver: paging.PageReceiver, fail_dir: Path, args: argparse.Namespace
) -> dict[str, Any] | None:
    """After the window: 1 % of the targets answer HTTP 500; how soon is each one paged?"""
    if not args.paging:
        return None
    from checks.models import Monitor

    targets = paging.pick(args.monitors)
    names = {monitor_name(n): n for n in targets}
    ids = dict(Monitor.objects.filter(name__in=names).values_list("name", "id"))
    close_db()
    threshold = paging.failure_threshold()
    deadline = threshold * args.interval + 30.0
    print(
        f"paging phase: {len(targets)} target(s) answer HTTP 500 from now; each monitor is down "
        f"after {threshold} failing results; waiting up to {deadline:g} s for the pages"
    )
    started = fail_targets(fail_dir, targets)
    flips = [paging.Flip(ids[name], name, started[n]) for name, n in names.items()]
    waited = paging.wait_for_pages(receiver, flips, deadline, stack.check_alive)
    found = paging.figures(receiver, flips, waited)
    close_db()
    return found


def main() -> int:
    args = parse_args()
    place = SMOKE if args.smoke else FULL
    signal.signal(signal.SIGTERM, interrupted)
    logs = Path(tempfile.mkdtemp(prefix="watchpost-fleet-"))
    ok = False
    try:
        results = []
        with exclusive(place, wait=900):
            runs = [(d, n, v) for n in args.monitors for d in args.design for v in args.variants]
            for design, monitors, (name, settings) in runs:
                only = {"design": design, "monitors": monitors, "variant": name}
                one = argparse.Namespace(**vars(args) | only | {"env": args.env + settings})
                folder = "-".join(filter(None, [design, str(monitors), name]))
                result = run(one, place, logs / folder)
                result["params"] = {
                    k: (str(v) if isinstance(v, Path) else v) for k, v in vars(one).items()
                }
                result["params"]["database"] = place.database
                result["params"]["redis_dbs"] = {"broker": place.broker_db, "cache": place.cache_db}
                result["host"] = host_info()
                result["targets"] = targets(result)
                report(result)
                results.append(result)
        output = results[0] if len(results) == 1 else comparison(results)
        path = write_results("fleet", output, args.output)
        print(f"\nwritten to {path}")
        ok = all(run_ok(result) for result in results)
    except Crashed as exc:
        print(f"CRASHED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; the stack was stopped", file=sys.stderr)
        return 130
    finally:
        drop_logs(logs, ok, args.keep_logs)
    return 0 if ok else 1


def run_ok(result: dict[str, Any]) -> bool:
    """Probes landed, and the stack logged no error (the rejected design may: it is the finding)."""
    name = f"{result['params']['design']}, {result['params']['monitors']:,} monitors"
    if not result["probes"]["achieved"]:
        print(f"FAILED: no probe landed in the window ({name})")
        return False
    if result["trouble"] and result["params"]["design"] == "dispatcher":
        print(f"FAILED: the stack logged errors (LOG lines above; {name})")
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
