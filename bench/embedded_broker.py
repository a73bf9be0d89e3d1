"""Why the embedded default uses the broker it does.

Compares, in one run on this machine, three Celery brokers behind a real
`celery worker` (concurrency 2) of the tiny app in bench/broker_app.py:

  fs     kombu filesystem://, with the transport options monitorsite/settings.py
         builds for the embedded default (polling every 0.05 s)
  sqla   kombu's SQLAlchemy transport on a SQLite file (sqla+sqlite:///...),
         polling every 0.05 s too; needs SQLAlchemy, which is not a Watchpost
         dependency (pip install SQLAlchemy into .venv to include it)
  redis  redis://127.0.0.1:6379/13, the production reference

    .venv/bin/python bench/embedded_broker.py [--tasks 1000] [--rounds 1]

Prints a table and writes bench/results/embedded_broker-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

import celery
import kombu
from broker_app import (
    HOLD_QUEUE,
    LINE_BYTES,
    NOOP,
    QUEUES,
    RECORD,
    TASK_QUEUE,
    make_app,
)
from common import (
    BENCH_DIR,
    REPO_DIR,
    host_info,
    percentiles,
    print_table,
    ratio,
    tree_cpu_seconds,
    write_results,
)

REDIS_URL = "redis://127.0.0.1:6379/13"
READY_TIMEOUT = 60.0

HOW_TO_READ = """\
How to read this: every broker ran on this machine in the same run, so compare
the columns, not the absolute figures (the machine is shared and noisy); the
ratio columns divide by the filesystem broker, today's embedded default. The
first three rows are better higher, the rest better lower. "publish" is how
fast the bench process alone sends (to a queue nobody consumes) and the CPU
each send costs it; "end-to-end" is N tasks sent at once and run by the worker
until the last one finished; the latency rows run from the moment a task was
sent to the moment the worker started it, with tasks sent at a steady rate as
beat and the dispatcher send them, and "worker CPU per task" is what the worker
spent per task meanwhile. "idle CPU" is what each worker (main process and its
2 pool processes) burns doing nothing, measured for all brokers at once, right
after start and again after the load: a broker whose idle cost grows with its
history shows it in the second row. A polling broker's latency floor is about
half its polling interval plus one poll; Redis blocks on BRPOP and has none.
Idle CPU is paid around the clock by every embedded install; throughput only
has to exceed the dispatch rate (about 1,700 probes/s at the design size, sent
in batches of probes per task)."""


@dataclass
class Broker:
    name: str
    url: str
    transport_options: dict[str, Any]
    cleanup: Callable[[], None] = lambda: None
    notes: list[str] = field(default_factory=list)


# --- Brokers ------------------------------------------------------------------


def filesystem_broker(tmp: Path, args: argparse.Namespace) -> Broker:
    """The embedded default, with the options settings.py really builds."""
    os.environ["WATCHPOST_DATA_DIR"] = str(tmp / "fs")
    os.environ.pop("CELERY_BROKER_URL", None)
    sys.path.insert(0, str(REPO_DIR))
    settings = importlib.import_module("monitorsite.settings")
    # Importing monitorsite set this; left set, Celery would load Django into the
    # bench's apps and workers, which are not Django apps.
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    if not settings.EMBEDDED_BROKER:
        raise RuntimeError("monitorsite.settings did not choose the embedded broker")
    return Broker("fs", "filesystem://", dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS))


def sqla_broker(tmp: Path, args: argparse.Namespace) -> Broker:
    import sqlalchemy

    path = tmp / "sqla" / "broker.sqlite3"
    path.parent.mkdir()
    broker = Broker("sqla", f"sqla+sqlite:///{path}", {"polling_interval": 0.05})
    broker.notes.append(
        f"SQLAlchemy {sqlalchemy.__version__}; kombu passes transport options to"
        " create_engine(), so polling_interval is set on the Transport class"
    )
    if args.sqla_history:
        add_sqla_history(broker, path, args.sqla_history)
    return broker


def add_sqla_history(broker: Broker, path: Path, rows: int) -> None:
    """Rows of consumed messages, as kombu leaves them behind (it never deletes one)."""
    app = make_app(broker.url, broker.transport_options)
    with app.connection_for_write() as conn:  # creates the tables and the queue rows
        for queue in app.amqp.queues.values():
            queue.bind(conn.default_channel).declare()
    with contextlib.closing(sqlite3.connect(path)) as db:
        (queue_id,) = db.execute(
            "SELECT id FROM kombu_queue WHERE name = ?", [TASK_QUEUE]
        ).fetchone()
        payload = json.dumps({"body": "x" * 600})  # about a Celery message's size
        db.executemany(
            "INSERT INTO kombu_message (visible, timestamp, payload, version, queue_id) "
            "VALUES (0, datetime('now'), ?, 1, ?)",
            ((payload, queue_id) for _ in range(rows)),
        )
        db.commit()
    broker.notes.append(f"started with {rows} consumed messages in kombu_message (--sqla-history)")


def redis_broker(tmp: Path, args: argparse.Namespace) -> Broker:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    client.ping()
    client.flushdb()  # db 13 is the bench's own
    # What settings.py sets for a non-embedded broker.
    options = {"visibility_timeout": 3600, "socket_connect_timeout": 5, "health_check_interval": 25}
    return Broker("redis", REDIS_URL, options, cleanup=client.flushdb)


BROKERS: dict[str, Callable[[Path, argparse.Namespace], Broker]] = {
    "fs": filesystem_broker,
    "sqla": sqla_broker,
    "redis": redis_broker,
}


# --- Worker -------------------------------------------------------------------


class WorkerDied(RuntimeError):
    """The worker process exited while the bench needed it."""


class Worker:
    """A `celery worker` subprocess in its own process group, so it can be ended whole."""

    def __init__(self, broker: Broker, tmp: Path) -> None:
        self.broker = broker
        self.tmp = tmp
        self.crashes: list[str] = []
        self.start()

    def start(self) -> None:
        self.log_path = self.tmp / f"worker-{self.broker.name}-{len(self.crashes)}.log"
        env = {
            **os.environ,
            "BENCH_BROKER_URL": self.broker.url,
            "BENCH_TRANSPORT_OPTIONS": json.dumps(self.broker.transport_options),
            "PYTHONPATH": str(BENCH_DIR),
        }
        cmd = [sys.executable, "-m", "celery", "-A", "broker_app", "worker"]
        cmd += ["-Q", ",".join(QUEUES), "-c", "2", "-n", f"bench-{self.broker.name}@%h"]
        cmd += ["--loglevel", "WARNING"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=BENCH_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def last_error(self) -> str:
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line]
        return lines[-1] if lines else "(no output)"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise WorkerDied(
                f"{self.broker.name} worker exited ({self.proc.returncode}): {self.last_error()}"
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        # The pool processes share the worker's process group; none may outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


# --- Measuring ----------------------------------------------------------------


class Client:
    """The sending side: one Celery app and one producer per broker, in this process."""

    def __init__(self, broker: Broker, tmp: Path) -> None:
        self.broker = broker
        self.tmp = tmp
        self.app = make_app(broker.url, broker.transport_options)
        self.runs = 0

    @contextlib.contextmanager
    def producer(self) -> Iterator[Any]:
        with self.app.producer_or_acquire() as producer:
            yield producer

    def new_record_file(self) -> Path:
        self.runs += 1
        return self.tmp / f"records-{self.broker.name}-{self.runs}.txt"

    def send_record(self, producer: Any, path: Path) -> None:
        self.app.send_task(
            RECORD, args=[str(path), time.time()], queue=TASK_QUEUE, producer=producer
        )

    def purge(self, queue: str) -> None:
        with self.app.connection_for_write() as conn:
            self.app.amqp.queues[queue].bind(conn.default_channel).purge()


def lines_done(path: Path) -> int:
    try:
        return path.stat().st_size // LINE_BYTES
    except FileNotFoundError:
        return 0


def wait_for(path: Path, count: int, timeout: float, worker: Worker) -> bool:
    deadline = time.monotonic() + timeout
    while lines_done(path) < count:
        if time.monotonic() > deadline:
            return False
        worker.check_alive()
        time.sleep(0.005)
    return True


def wait_ready(client: Client, worker: Worker) -> float:
    """Seconds until the worker ran its first task: the worker is consuming from then on."""
    started = time.monotonic()
    path = client.new_record_file()
    with client.producer() as producer:
        client.send_record(producer, path)
    if not wait_for(path, 1, READY_TIMEOUT, worker):
        raise RuntimeError(f"{worker.broker.name} worker never ran a task: {worker.last_error()}")
    return time.monotonic() - started


def measure_publish(client: Client, count: int) -> dict[str, float]:
    with client.producer() as producer:
        client.app.send_task(NOOP, queue=HOLD_QUEUE, producer=producer)  # declares the queue
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            client.app.send_task(NOOP, queue=HOLD_QUEUE, producer=producer)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    client.purge(HOLD_QUEUE)
    return {"publish_per_s": count / wall, "publish_cpu_us": cpu / count * 1e6}


def measure_throughput(
    client: Client, worker: Worker, count: int, timeout: float
) -> dict[str, float]:
    path = client.new_record_file()
    started = time.perf_counter()
    with client.producer() as producer:
        for _ in range(count):
            client.send_record(producer, path)
    finished = wait_for(path, count, timeout, worker)
    elapsed = time.perf_counter() - started
    done = lines_done(path)
    return {
        "throughput_per_s": done / elapsed,
        "throughput_done": done,
        "throughput_complete": finished,
    }


def measure_latency(
    client: Client, worker: Worker, rate: float, seconds: float
) -> dict[str, float]:
    path = client.new_record_file()
    count = max(2, round(rate * seconds))
    worker_cpu = tree_cpu_seconds([worker.pid])[worker.pid]
    with client.producer() as producer:
        start = time.perf_counter() + 0.05
        for i in range(count):
            # Sleep to each send's slot, so a slow send does not push the rest back.
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            client.send_record(producer, path)
    wait_for(path, count, 30.0, worker)
    worker_cpu = tree_cpu_seconds([worker.pid])[worker.pid] - worker_cpu
    latencies = []
    for line in path.read_text().splitlines():
        sent, started = map(float, line.split())
        latencies.append((started - sent) * 1000)
    result = {f"latency_{k}_ms": v for k, v in percentiles(latencies).items()}
    result["latency_max_ms"] = max(latencies, default=float("nan"))
    result["latency_done"] = len(latencies)
    # CPU the worker spent per task while running tasks at this steady rate.
    result["busy_cpu_ms_per_task"] = worker_cpu / max(1, len(latencies)) * 1000
    return result


def measure_idle(workers: list[Worker], seconds: float) -> dict[str, float | None]:
    pids = [w.pid for w in workers]
    before = tree_cpu_seconds(pids)
    time.sleep(seconds)
    after = tree_cpu_seconds(pids)
    idle: dict[str, float | None] = {}
    for worker in workers:
        alive = worker.proc.poll() is None
        idle[worker.broker.name] = after[worker.pid] - before[worker.pid] if alive else None
    return idle


def with_restarts(client: Client, worker: Worker, phase: Callable[[], dict]) -> dict:
    """Runs a phase; if the worker dies, notes why, restarts it and runs the phase again."""
    for _ in range(3):
        try:
            worker.check_alive()
            return phase()
        except WorkerDied as exc:
            print(f"    {exc}\n    restarting it and repeating the phase", flush=True)
            worker.crashes.append(str(exc))
            worker.stop()
            client.purge(TASK_QUEUE)  # what the dead worker left would skew the rerun
            worker.start()
            wait_ready(client, worker)
    return {}


def sqla_rows_left(broker: Broker) -> dict[str, int]:
    """Messages kombu's SQLAlchemy transport keeps after they were consumed."""
    path = broker.url.removeprefix("sqla+sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        total, visible = db.execute(
            "SELECT count(*), coalesce(sum(visible), 0) FROM kombu_message"
        ).fetchone()
    return {"rows": total, "visible_rows": visible, "bytes": os.path.getsize(path)}


# --- Running ------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="N for publish and end-to-end")
    parser.add_argument("--rate", type=float, default=20.0, help="tasks/s in the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the loaded phases")
    parser.add_argument("--timeout", type=float, default=60.0, help="end-to-end give-up time")
    parser.add_argument("--brokers", default="fs,sqla,redis", help="comma-separated subset")
    parser.add_argument(
        "--sqla-history",
        type=int,
        default=0,
        help="start sqla with this many consumed messages, as hours of use leave",
    )
    return parser.parse_args()


def set_up(
    names: list[str], tmp: Path, args: argparse.Namespace
) -> tuple[list[Broker], dict[str, str]]:
    brokers, unavailable = [], {}
    for name in names:
        try:
            brokers.append(BROKERS[name](tmp, args))
        except Exception as exc:  # a missing broker is reported, not fatal
            unavailable[name] = f"{type(exc).__name__}: {exc}"
    return brokers, unavailable


def run_loaded(
    args: argparse.Namespace, clients: list[Client], workers: list[Worker]
) -> dict[str, list[dict[str, Any]]]:
    rounds: dict[str, list[dict[str, Any]]] = {c.broker.name: [] for c in clients}
    pairs = list(zip(clients, workers, strict=True))
    for n in range(args.rounds):
        # Rotate the order, so no broker always runs first (or last) on a noisy machine.
        for client, worker in pairs[n % len(pairs) :] + pairs[: n % len(pairs)]:
            name = client.broker.name
            print(f"  round {n + 1}: {name} publish / end-to-end / latency ...", flush=True)
            rounds[name].append(measure_loaded(client, worker, args))
    return rounds


def measure_loaded(client: Client, worker: Worker, args: argparse.Namespace) -> dict[str, Any]:
    phases = [
        partial(measure_publish, client, args.tasks),
        partial(measure_throughput, client, worker, args.tasks, args.timeout),
        partial(measure_latency, client, worker, args.rate, args.latency_seconds),
    ]
    result: dict[str, Any] = {}
    for phase in phases:
        result |= with_restarts(client, worker, phase)
    return result


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the rounds that have it."""
    keys = {k for r in rounds for k, v in r.items() if not isinstance(v, bool)}
    return {k: median(r[k] for r in rounds if k in r) for k in sorted(keys)}


ROWS = [
    ("publish (tasks/s, bench process)", "publish_per_s"),
    ("publish CPU (µs/task, bench process)", "publish_cpu_us"),
    ("end-to-end N tasks (tasks/s)", "throughput_per_s"),
    ("latency p50 (ms) at steady rate", "latency_p50_ms"),
    ("latency p95 (ms)", "latency_p95_ms"),
    ("latency p99 (ms)", "latency_p99_ms"),
    ("latency max (ms)", "latency_max_ms"),
    ("worker CPU per task (ms) at steady rate", "busy_cpu_ms_per_task"),
    ("idle CPU fresh (CPU-s per idle window)", "idle_cpu_fresh_s"),
    ("idle CPU after load (CPU-s per window)", "idle_cpu_after_s"),
    ("worker crashes (restarted, phase rerun)", "worker_crashes"),
]


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    names = list(results)
    base = "fs" if "fs" in results else names[0]
    others = [n for n in names if n != base]
    headers = ["", *names, *(f"{n}/{base}" for n in others)]
    rows = []
    ratios: dict[str, dict[str, float | None]] = {n: {} for n in others}
    for label, key in ROWS:
        label = label.replace("idle window", f"{args.idle_seconds:g} s").replace(
            "per window", f"per {args.idle_seconds:g} s"
        )
        values = [results[n].get(key) for n in names]
        row_ratios = [ratio(results[n].get(key), results[base].get(key)) for n in others]
        for n, r in zip(others, row_ratios, strict=True):
            ratios[n][key] = r
        rows.append([label.replace("steady rate", f"{args.rate:g}/s"), *values, *row_ratios])
    print_table(headers, rows)
    return ratios


def measure_all(
    args: argparse.Namespace, brokers: list[Broker], workers: list[Worker], tmp: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    clients = [Client(b, tmp) for b in brokers]
    print(f"started {len(workers)} workers; waiting until each runs a task ...", flush=True)
    ready = {c.broker.name: wait_ready(c, w) for c, w in zip(clients, workers, strict=True)}
    print(f"measuring idle CPU of all workers at once for {args.idle_seconds:g} s ...")
    idle_fresh = measure_idle(workers, args.idle_seconds)
    rounds = run_loaded(args, clients, workers)
    print(f"measuring idle CPU after the load for {args.idle_seconds:g} s ...", flush=True)
    idle_after = measure_idle(workers, args.idle_seconds)
    results = {}
    for broker, worker in zip(brokers, workers, strict=True):
        results[broker.name] = summarize(rounds[broker.name]) | {
            "ready_s": ready[broker.name],
            "idle_cpu_fresh_s": idle_fresh[broker.name],
            "idle_cpu_after_s": idle_after[broker.name],
            "worker_crashes": len(worker.crashes),
            "worker_crash_reasons": worker.crashes,
        }
        add_notes(broker, worker, rounds[broker.name], args)
    if "sqla" in results:
        sqla = next(b for b in brokers if b.name == "sqla")
        left = results["sqla"]["table_after_run"] = sqla_rows_left(sqla)
        sqla.notes.append(
            f"kombu_message keeps consumed messages: {left['rows']} rows "
            f"({left['visible_rows']} unconsumed), file {left['bytes'] / 1e6:.1f} MB"
        )
    return results, rounds


def add_notes(
    broker: Broker, worker: Worker, rounds: list[dict[str, Any]], args: argparse.Namespace
) -> None:
    incomplete = [r for r in rounds if not r.get("throughput_complete", True)]
    if incomplete:
        broker.notes.append(
            f"end-to-end did not finish within {args.timeout:g} s in "
            f"{len(incomplete)} round(s); the rate counts the tasks that did"
        )
    for reason in sorted(set(worker.crashes)):
        broker.notes.append(f"worker crashed {worker.crashes.count(reason)}x: {reason}")


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="watchpost-brokerbench-"))
    brokers, unavailable = set_up(args.brokers.split(","), tmp, args)
    for name, reason in unavailable.items():
        print(f"{name}: not measured ({reason})")
    workers: list[Worker] = []
    try:
        workers = [Worker(b, tmp) for b in brokers]
        results, rounds = measure_all(args, brokers, workers, tmp)
    finally:
        for worker in workers:
            worker.stop()
        for broker in brokers:
            broker.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    ratios = report(results, args)
    for broker in brokers:
        for note in broker.notes:
            print(f"note ({broker.name}): {note}")
    print()
    print(HOW_TO_READ)
    path = write_results(
        "embedded_broker",
        {
            "benchmark": "embedded_broker",
            "host": host_info() | {"celery": celery.__version__, "kombu": kombu.__version__},
            "params": vars(args),
            "brokers": {
                b.name: {"url": b.url, "transport_options": b.transport_options} for b in brokers
            },
            "results": results,
            "rounds": rounds,
            "ratios_vs_fs": ratios,
            "unavailable": unavailable,
            "notes": {b.name: b.notes for b in brokers},
        },
    )
    print(f"\nwrote {path.relative_to(REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
