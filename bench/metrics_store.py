"""The cost of Watchpost's metrics design, per probe result recorded.

Compares, in one run, four ways to count probe results (one counter increment
and one histogram observation per result) and read the totals back:

  pg      monitorsite.metrics recorder.inc/observe, one flush (INSERT ... ON
          CONFLICT upsert) per batch into PostgreSQL (watchpost_bench on 127.0.0.1)
  sqlite  the same into SQLite in WAL mode, as settings.py opens it
  redis   the same recorder, its deltas pushed with HINCRBYFLOAT in one pipeline
          per batch (redis://127.0.0.1:6379/12, one hash)
  prom    prometheus_client in multiprocess mode (PROMETHEUS_MULTIPROC_DIR): a
          Counter and a Histogram increment per result, nothing to flush

Each store runs in its own child process (the environment has to be set before
django.setup() and before prometheus_client is imported), one after another.

    .venv/bin/python bench/metrics_store.py [--results 50000] [--batches 100,1] [--rounds 1]

Prints a table and writes bench/results/metrics_store-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from typing import Any

from common import REPO_DIR, host_info, percentiles, print_table, tree_cpu_seconds, write_results

PG_URL = "postgres://postgres@127.0.0.1:5432/watchpost_bench"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/12"
REDIS_KEY = "watchpost:bench:metrics"
STORES = ("pg", "sqlite", "redis", "prom")
# 10 kinds x 4 outcomes counter series + 10 histogram series = 50 series.
KINDS = ("http", "tcp", "dns", "ping", "tls", "keyword", "heartbeat", "smtp", "grpc", "json")
OUTCOMES = ("ok", "critical", "timeout", "error")
SERIES = len(KINDS) * len(OUTCOMES) + len(KINDS)
PROBES_PER_S = 1700

HOW_TO_READ = f"""\
How to read this: all stores ran in the same run on this machine; compare rows,
not absolute figures (the machine is shared and noisy). One "result" is one
probe outcome: a counter increment plus a histogram observation. "record" is the
CPU the recording process spends in inc/observe, "flush" the CPU it spends
sending a batch's deltas to the store, "client" their sum; "server" is the CPU
the PostgreSQL backend or redis-server spent on those flushes (SQLite and
prometheus_client work inside the recording process, so theirs is 0).
"cores@{PROBES_PER_S}/s" is (client + server) x {PROBES_PER_S} results/s: the share
of one core the metrics alone would take at Watchpost's design rate, on a
2-core machine. "flushes/s" is how many back-to-back flushes one process
manages (wall clock, incl. commit and fsync); {PROBES_PER_S} results/s needs
{PROBES_PER_S} / batch of them, from all workers together, and SQLite takes one
writer at a time. "scrape" is reading the {SERIES} series back and rendering
them in the Prometheus text format; "/metrics" is the whole view (with the
queue-depth and worker gauges), for the Django stores. "x prom" divides the
client + server CPU by prometheus_client's. Batch 1 is a flush per result:
what Watchpost's per-task flush (task_postrun) costs when a task runs one probe."""


# --- Child: one store, measured in its own process ------------------------------


class DbStore:
    """Watchpost's design: the recorder's deltas upserted into monitorsite_metricvalue."""

    flushes = True

    def __init__(self) -> None:
        from monitorsite import metrics
        from monitorsite.models import MetricValue

        self.metrics = metrics
        self.model = MetricValue

    def reset(self) -> None:
        self.metrics.recorder.pending.clear()
        self.model.objects.all().delete()

    def record(self, kind: str, outcome: str, duration: float) -> None:
        self.metrics.inc(self.metrics.PROBES, {"kind": kind, "outcome": outcome})
        self.metrics.observe(self.metrics.PROBE_DURATION, duration, {"kind": kind})

    def flush(self) -> int:
        return self.metrics.flush()

    def server_pid(self) -> int | None:
        from django.db import connection

        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    def stored(self) -> dict[str, dict[str, float]]:
        stored: dict[str, dict[str, float]] = defaultdict(dict)
        for name, labels, value in self.model.objects.values_list("name", "labels", "value"):
            stored[name][labels] = value
        return stored

    def scrape(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoredCollector(self.metrics._stored_families))
        return generate_latest(registry)

    def full_view(self) -> bytes | None:
        from django.test import RequestFactory

        from monitorsite.health import metrics as metrics_view

        return metrics_view(RequestFactory().get("/metrics")).content


class StoredCollector:
    def __init__(self, families: Any) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        yield from self.families()


class RedisStore(DbStore):
    """The same recorder; its deltas go to one Redis hash instead of the database."""

    def __init__(self) -> None:
        import redis

        super().__init__()
        self.client = redis.Redis.from_url(REDIS_URL)

    def reset(self) -> None:
        self.metrics.recorder.pending.clear()
        self.client.delete(REDIS_KEY)

    def flush(self) -> int:
        recorder = self.metrics.recorder
        with recorder.lock:
            batch, recorder.pending = recorder.pending, defaultdict(float)
        pipe = self.client.pipeline(transaction=False)
        for (name, labels), value in sorted(batch.items()):
            # JSON escapes a tab, so a tab cannot occur inside the labels.
            pipe.hincrbyfloat(REDIS_KEY, f"{name}\t{labels}", value)
        pipe.execute()
        return len(batch)

    def server_pid(self) -> int | None:
        return int(self.client.info("server")["process_id"])

    def stored(self) -> dict[str, dict[str, float]]:
        stored: dict[str, dict[str, float]] = defaultdict(dict)
        for field, value in self.client.hgetall(REDIS_KEY).items():
            name, labels = field.decode().split("\t", 1)
            stored[name][labels] = float(value)
        return stored

    def scrape(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoredCollector(lambda: self.families(self.stored())))
        return generate_latest(registry)

    def families(self, stored: dict[str, dict[str, float]]) -> Iterator[Any]:
        """What monitorsite.metrics._stored_families builds, from the hash."""
        from prometheus_client.core import CounterMetricFamily

        for metric in self.metrics.DEFINITIONS.values():
            if metric.is_histogram:
                yield self.metrics._histogram_family(metric, stored)
                continue
            name = metric.name.removesuffix("_total")
            family = CounterMetricFamily(name, metric.documentation, labels=metric.labelnames)
            for labels, value in sorted(stored.get(metric.name, {}).items()):
                family.add_metric(json.loads(labels), value)
            yield family

    def full_view(self) -> bytes | None:
        return None


class PromStore:
    """prometheus_client's own answer: every increment lands in a per-process mmap file."""

    flushes = False

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        from monitorsite import metrics

        self.dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        self.probes = Counter("watchpost_probes", "Probes run.", ["kind", "outcome"], registry=None)
        self.duration = Histogram(
            "watchpost_probe_duration_seconds",
            "Probe time.",
            ["kind"],
            buckets=metrics.LATENCY_BUCKETS,
            registry=None,
        )

    def reset(self) -> None:
        pass  # the directory is new for every child

    def record(self, kind: str, outcome: str, duration: float) -> None:
        self.probes.labels(kind=kind, outcome=outcome).inc()
        self.duration.labels(kind=kind).observe(duration)

    def flush(self) -> int:
        return 0

    def server_pid(self) -> int | None:
        return None

    def scrape(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.dir))
        return generate_latest(registry)

    def full_view(self) -> bytes | None:
        return None


def samples(count: int) -> list[tuple[str, str, float]]:
    """Deterministic results: every kind and outcome within 40, durations over all buckets."""
    rng = random.Random(1700)
    return [
        (
            KINDS[i % len(KINDS)],
            OUTCOMES[(i // len(KINDS)) % len(OUTCOMES)],
            rng.lognormvariate(math.log(0.08), 1.2),
        )
        for i in range(count)
    ]


def server_cpu(pid: int | None) -> float:
    return 0.0 if pid is None else tree_cpu_seconds([pid])[pid]


def record_and_flush(store: Any, results: list[tuple[str, str, float]], batch: int) -> dict:
    pid = store.server_pid()
    server_before = server_cpu(pid)
    record_cpu = flush_cpu = 0.0
    walls: list[float] = []
    failed = 0
    started = time.perf_counter()
    for i in range(0, len(results), batch):
        cpu = time.process_time()
        for kind, outcome, duration in results[i : i + batch]:
            store.record(kind, outcome, duration)
        cpu_recorded, wall = time.process_time(), time.perf_counter()
        if store.flushes:
            failed += store.flush() == 0  # the recorder keeps deltas it could not write
            walls.append(time.perf_counter() - wall)
        flush_cpu += time.process_time() - cpu_recorded
        record_cpu += cpu_recorded - cpu
    elapsed = time.perf_counter() - started
    n = len(results)
    result = {
        "results": n,
        "record_us": record_cpu / n * 1e6,
        "flush_us": flush_cpu / n * 1e6,
        "server_us": (server_cpu(pid) - server_before) / n * 1e6,
        "results_per_s": n / elapsed,
        "failed_flushes": failed,
    }
    if walls:
        result["flushes_per_s"] = len(walls) / sum(walls)
        result["flush_wall_p50_ms"] = percentiles(walls, (50,))["p50"] * 1000
    return result


def timed_ms(func: Any, repeat: int) -> tuple[float, bytes]:
    func()  # warm: imports, prepared statements, connection
    times, body = [], b""
    for _ in range(repeat):
        started = time.perf_counter()
        body = func()
        times.append(time.perf_counter() - started)
    return median(times) * 1000, body


def count_series(body: bytes) -> int:
    lines = body.decode().splitlines()
    counters = sum(line.startswith("watchpost_probes_total{") for line in lines)
    histograms = sum(line.startswith("watchpost_probe_duration_seconds_count{") for line in lines)
    return counters + histograms


def probes_total(body: bytes) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith("watchpost_probes_total{")
    )


def child_main(args: argparse.Namespace) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "monitorsite.settings"
    sys.path.insert(0, str(REPO_DIR))
    import django

    django.setup()
    store = {"pg": DbStore, "sqlite": DbStore, "redis": RedisStore, "prom": PromStore}[args.child]()
    store.reset()
    warm_up = samples(args.batch * 5)
    record_and_flush(store, warm_up, args.batch)
    store.reset()
    results = samples(min(args.results, args.batch * args.max_flushes))
    result = record_and_flush(store, results, args.batch)
    # prometheus_client cannot forget what this process counted while warming up.
    result["probes_expected"] = len(results) + (0 if store.flushes else len(warm_up))
    if args.scrapes:
        result["scrape_ms"], body = timed_ms(store.scrape, args.scrapes)
        result["series"] = count_series(body)
        result["probes_counted"] = probes_total(body)
        if store.full_view() is not None:
            result["view_ms"], _ = timed_ms(store.full_view, args.scrapes)
    print(json.dumps(result))


# --- Parent: prepares the stores, runs the children, reports --------------------


def prepare_pg(env: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = 'watchpost_bench'"
        ).fetchone()
        if not exists:
            conn.execute("CREATE DATABASE watchpost_bench")
    migrate(env | {"DATABASE_URL": PG_URL})


def prepare_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_DIR,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def child_env(store: str, base: dict[str, str], tmp: Path) -> dict[str, str]:
    env = dict(base)
    if store == "pg":
        env["DATABASE_URL"] = PG_URL
    if store == "prom":
        # A new directory each time: files of an earlier child would be summed in.
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prom-", dir=tmp)
    return env


def run_child(store: str, batch: int, args: argparse.Namespace, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--child", store, "--batch", str(batch)]
    cmd += ["--results", str(args.results), "--max-flushes", str(args.max_flushes)]
    cmd += ["--scrapes", str(args.scrapes)]
    proc = subprocess.run(cmd, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-8:])
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS", "CELERY"))}
    env.pop("REDIS_URL", None)
    # Everything the settings would write (secret key, SQLite, broker folder) goes
    # to a scratch directory, not the checkout's var/.
    env["WATCHPOST_DATA_DIR"] = str(tmp / "data")
    env["DATABASE_URL"] = f"sqlite:///{tmp / 'data' / 'metrics.sqlite3'}"
    return env


def prepare(stores: list[str], env: dict[str, str]) -> dict[str, str]:
    unavailable = {}
    migrate(env)  # SQLite, used by the sqlite store and as the others' idle database
    for store, setup in (("pg", lambda: prepare_pg(env)), ("redis", prepare_redis)):
        if store in stores:
            try:
                setup()
            except Exception as exc:  # a missing server is reported, not fatal
                unavailable[store] = f"{type(exc).__name__}: {exc}"
    return unavailable


def run_all(args: argparse.Namespace, stores: list[str], env: dict[str, str], tmp: Path) -> dict:
    jobs = [(s, b) for b in args.batches for s in stores if s != "prom" or b == args.batches[0]]
    runs: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for n in range(args.rounds):
        # Rotate the order, so no store always runs first on a noisy machine.
        shift = n % len(jobs)
        for store, batch in jobs[shift:] + jobs[:shift]:
            print(f"  round {n + 1}: {store}, batch {batch} ...", flush=True)
            runs[(store, batch)].append(run_child(store, batch, args, child_env(store, env, tmp)))
    return runs


def summarize(runs: list[dict]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0]["error"]}
    summary = {k: median(r[k] for r in good) for k in good[0]}
    summary["client_us"] = summary["record_us"] + summary["flush_us"]
    summary["total_us"] = summary["client_us"] + summary["server_us"]
    summary["cores_at_design_rate"] = summary["total_us"] * PROBES_PER_S / 1e6
    return summary


COLUMNS = [
    ("record µs", "record_us"),
    ("flush µs", "flush_us"),
    ("client µs", "client_us"),
    ("server µs", "server_us"),
    (f"cores@{PROBES_PER_S}/s", "cores_at_design_rate"),
    ("x prom", "vs_prom"),
    ("flushes/s", "flushes_per_s"),
    ("flush p50 ms", "flush_wall_p50_ms"),
    ("scrape ms", "scrape_ms"),
    ("/metrics ms", "view_ms"),
]


def report(results: dict[str, dict[str, Any]]) -> None:
    prom = results.get("prom", {}).get("total_us")
    rows = []
    for label, result in results.items():
        if "error" in result:
            continue
        if prom:
            result["vs_prom"] = result["total_us"] / prom
        rows.append([label, *(result.get(key) for _, key in COLUMNS)])
    print_table(["store (per result)", *(c for c, _ in COLUMNS)], rows)
    for label, result in results.items():
        if "error" in result:
            print(f"{label}: failed: {result['error']}")
        elif (result.get("series"), result.get("probes_counted")) != (
            SERIES,
            result["probes_expected"],
        ):
            print(
                f"{label}: CHECK FAILED: read back {result.get('series')} series and "
                f"{result.get('probes_counted')} probes, expected {SERIES} and "
                f"{result['probes_expected']}"
            )
        elif result.get("failed_flushes"):
            print(f"{label}: {result['failed_flushes']} flushes failed and were retried")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=50_000, help="results per store")
    parser.add_argument(
        "--max-flushes", type=int, default=5000, help="fewer results if a batch size needs more"
    )
    parser.add_argument(
        "--batches", default="100,1", help="results per flush, comma-separated (first is main)"
    )
    parser.add_argument("--scrapes", type=int, default=50, help="scrapes timed per store")
    parser.add_argument("--rounds", type=int, default=2, help="repeat every store this often")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated subset")
    parser.add_argument("--child", choices=STORES, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.child:
        args.batches = [int(b) for b in args.batches.split(",")]
    return args


def main() -> int:
    args = parse_args()
    if args.child:
        child_main(args)
        return 0
    stores = args.stores.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="watchpost-metricsbench-"))
    try:
        env = base_env(tmp)
        unavailable = prepare(stores, env)
        for store, reason in unavailable.items():
            print(f"{store}: not measured ({reason})")
        stores = [s for s in stores if s not in unavailable]
        runs = run_all(args, stores, env, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if "redis" in stores:
            import redis

            redis.Redis.from_url(REDIS_URL).delete(REDIS_KEY)
    results = {
        (store if store == "prom" else f"{store} batch {batch}"): summarize(r)
        for (store, batch), r in runs.items()
    }
    print()
    report(results)
    print()
    print(HOW_TO_READ)
    path = write_results(
        "metrics_store",
        {
            "benchmark": "metrics_store",
            "host": host_info(),
            "params": {k: v for k, v in vars(args).items() if k not in ("child", "batch")},
            "series": SERIES,
            "design_rate_per_s": PROBES_PER_S,
            "results": results,
            "runs": {f"{s} batch {b}": r for (s, b), r in runs.items()},
            "unavailable": unavailable,
        },
    )
    print(f"\nwrote {path.relative_to(REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
