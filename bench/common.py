"""Helpers the benchmarks share: percentiles, process CPU, tables, result files, and the
processes they start (gunicorn, a Celery worker) and drive (wrk)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """Inclusive percentiles, the same on every run (no interpolation surprises at small n)."""
    if not values:
        return {f"p{p}": math.nan for p in points}
    if len(values) == 1:
        return {f"p{p}": values[0] for p in points}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {f"p{p}": cuts[p - 1] for p in points}


def _proc_stats() -> dict[int, tuple[int, float, float]]:
    """pid -> (ppid, own CPU seconds, CPU seconds of its reaped children) for every process."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # the process ended while we listed
        # The command name is in parentheses and may hold spaces: split after it.
        fields = raw.rsplit(")", 1)[1].split()
        ppid = int(fields[1])
        own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        reaped = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
        stats[int(entry)] = (ppid, own, reaped)
    return stats


def tree_cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds used so far by each pid and every live or reaped descendant."""
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    totals = {}
    for root in pids:
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            if pid not in stats:
                continue
            _, own, reaped = stats[pid]
            total += own + reaped
            stack.extend(children.get(pid, []))
        totals[root] = total
    return totals


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0 or math.isnan(value) or math.isnan(base):
        return None
    return value / base


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        magnitude = math.floor(math.log10(abs(value)))
        decimals = max(0, digits - 1 - magnitude)
        return f"{value:,.{decimals}f}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        first = row[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        print(f"{first}  {rest}")
        if n == 0:
            print("  ".join("-" * w for w in widths))


def host_info() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_1_5_15": [round(x, 2) for x in load],
    }


def write_results(name: str, payload: dict[str, Any], output: Path | None = None) -> Path:
    """Write the JSON to `output`, or to bench/results/<name>-<timestamp>.json."""
    if output is None:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        output = RESULTS_DIR / f"{name}-{stamp}.json"
    output.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return output


def interrupted(signum: int, frame: Any) -> None:
    """SIGTERM handler: stop like Ctrl-C, so the `finally` blocks stop what was started."""
    raise KeyboardInterrupt


def print_verdict(targets: list[dict[str, Any]], trouble: list[str], how_to_read: str) -> None:
    """PASS or FAIL for each target, the first error lines the processes logged, how to read it."""
    for t in targets:
        print(f"{'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {fmt(t['value'])}")
    for line in trouble[:10]:
        print(f"LOG   {line}")
    print()
    print(how_to_read)


def drop_logs(logs: Path, ok: bool, keep: bool) -> None:
    """Remove a run's logs when it went well, else say where they are."""
    if ok and not keep:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        print(f"logs: {logs}", file=sys.stderr)


# --- Processes the benchmarks start ------------------------------------------------------------


class Crashed(RuntimeError):
    """A process the bench started ended, never got ready, or answered wrongly."""


def tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:]) or "(no output)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(
    port: int, check_alive: Callable[[], None], seconds: float = 15, what: str = "the target"
) -> None:
    """Return once 127.0.0.1:`port` accepts connections; `check_alive` raises if its server died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check_alive()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise Crashed(f"{what} did not listen on 127.0.0.1:{port} within {seconds:g} s")


NGINX_MAIN = """\
daemon off;
master_process on;
worker_processes {processes};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
"""


def nginx_conf(tmp: Path, http: str, processes: int = 1) -> str:
    """An nginx.conf for targets on loopback: in the foreground, every file it writes under
    `tmp`, no access log, long keep-alive; `http` is the rest of its http block (servers)."""
    return NGINX_MAIN.format(tmp=tmp, processes=processes) + http + "}\n"


@dataclass
class Service:
    """A process the bench started in its own session (its children stop with it), and its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise Crashed(f"{self.name} exited with {self.popen.returncode}:\n{tail(self.log)}")

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def stop(self) -> None:
        """SIGTERM (graceful: in-flight work finishes), then SIGKILL to the whole group."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # a child stuck past the graceful timeout
        self.popen.wait()


def start_service(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    logs: Path,
    ready: Callable[[Service], bool],
    seconds: float = 30,
    port: int = 0,
) -> Service:
    """Start `cmd` with its output in logs/<name>.log; return once `ready(service)` holds."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            cmd,
            cwd=REPO_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(name, popen, log, port)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        service.check_alive()
        if ready(service):
            return service
        time.sleep(0.1)
    service.stop()
    raise Crashed(f"{name} was not ready within {seconds:g} s:\n{tail(log)}")


def listening(service: Service) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", service.port), 0.5):
        return True
    return False


def start_gunicorn(env: dict[str, str], logs: Path, name: str = "gunicorn") -> Service:
    """gunicorn exactly as `make run` starts it, on a free loopback port."""
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    cmd = [gunicorn, "monitorsite.wsgi", "--config", "monitorsite/gunicorn.conf.py"]
    env = env | {"WATCHPOST_BIND": f"127.0.0.1:{port}"}
    return start_service(name, cmd, env, logs, listening, port=port)


def start_celery_worker(
    env: dict[str, str], logs: Path, queues: str, concurrency: int = 1, name: str = "worker"
) -> Service:
    """`celery -A monitorsite worker -Q <queues> -c <concurrency>`, once it says it is ready."""
    cmd = [sys.executable, "-m", "celery", "-A", "monitorsite", "worker", "-Q", queues]
    cmd += ["-c", str(concurrency), "--hostname", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO"]
    return start_service(
        name, cmd, env, logs, lambda s: b" ready." in s.log.read_bytes(), seconds=90
    )


# --- wrk and the CPU it costs ------------------------------------------------------------------

# wrk's response() and done(): count 2xx and other answers, print JSON when done.
# A script adds its own setup() (which keeps `threads`) and init() (which zeroes
# `ok` and `other`), and request() if it varies the requests.
WRK_COUNT_LUA = """\
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local ok_total, other_total = 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    other_total = other_total + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "ok": %d, "other": %d, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, summary.bytes, ok_total, other_total,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

WRK_LUA = (
    """\
-- Written by bench/common.py: count 2xx and other answers, print JSON when done.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  other = 0
end

"""
    + WRK_COUNT_LUA
)


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(
            "wrk is not installed: `sudo apt-get install -y wrk` (Debian's package), then rerun"
        )
    return path


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def children_cpu_seconds() -> float:
    """CPU of this process's reaped children (wrk, once waited for)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def machine_busy_seconds() -> float:
    """CPU-seconds all cores spent not idle since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS


@dataclass
class PgBackends:
    """CPU of the PostgreSQL backends connected to one database, polled.

    They come and go (CONN_MAX_AGE), so each is counted from when it was first
    seen (0 if it started during the run) to when it was last seen. The server
    is shared; only these are the bench's.
    """

    postmaster: int
    database: str
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)

    def poll(self, starting: bool = False) -> None:
        for pid in children(self.postmaster):
            with contextlib.suppress(OSError, IndexError):
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
                if self.database.encode() not in title:
                    continue
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
                self.first.setdefault(pid, cpu if starting else 0.0)
                self.last[pid] = cpu

    def cpu_seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def postmaster_pid() -> int:
    """The PostgreSQL server's pid, from the backend of Django's connection (closed after)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
        # Read while the backend lives: it exits when the connection closes.
        parent = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    connection.close()
    return parent


@dataclass
class WrkRun:
    """One wrk run: its figures (WRK_JSON), and the CPU each group of processes used meanwhile."""

    figures: dict[str, Any]
    output: str
    elapsed: float
    cpu_seconds: dict[str, float]
    busy_cores: float

    @property
    def seconds(self) -> float:
        return self.figures["duration_us"] / 1e6

    def per_s(self) -> float:
        return self.figures["ok"] / self.seconds if self.seconds else 0.0

    def latency_ms(self) -> dict[str, float]:
        return {p: self.figures[f"{p}_us"] / 1000 for p in ("p50", "p90", "p99", "max", "mean")}

    def socket_errors(self) -> int:
        return sum(self.figures[k] for k in ("connect", "read", "write", "timeout"))

    def others_cores(self) -> float:
        """What the machine's other users took meanwhile (the bench's own share is tiny)."""
        return max(0.0, self.busy_cores - sum(self.cpu_seconds.values()) / self.elapsed)


def run_wrk(
    wrk_args: list[str],
    url: str,
    script: Path,
    roots: dict[str, int],
    backends: PgBackends | None,
    alive: Callable[[], None],
) -> WrkRun:
    """wrk with WRK_LUA's counting `script`, and the CPU of each process tree in `roots`."""
    cmd = [find_wrk(), *wrk_args, "--latency", "-s", str(script), url]
    print(f"running: {' '.join(cmd)}")
    if backends is not None:
        backends.poll(starting=True)
    cpu_before, busy_before = tree_cpu_seconds(list(roots.values())), machine_busy_seconds()
    wrk_before = children_cpu_seconds()
    started = time.monotonic()
    wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while wrk.poll() is None:
        time.sleep(0.5)
        if backends is not None:
            backends.poll()
    elapsed = time.monotonic() - started
    cpu_after, busy_after = tree_cpu_seconds(list(roots.values())), machine_busy_seconds()
    cpu = {group: cpu_after[pid] - cpu_before[pid] for group, pid in roots.items()}
    if backends is not None:
        backends.poll()
        cpu["postgres (bench db)"] = backends.cpu_seconds()
    cpu["wrk"] = children_cpu_seconds() - wrk_before  # wrk is the only child reaped meanwhile
    alive()
    output = wrk.stdout.read() if wrk.stdout else ""
    match = re.search(r"^WRK_JSON (.*)$", output, re.M)
    if wrk.returncode or not match:
        raise Crashed(f"wrk failed ({wrk.returncode}):\n{output}")
    return WrkRun(
        figures=json.loads(match.group(1)),
        output=output.replace(match.group(0), "").strip(),
        elapsed=elapsed,
        cpu_seconds=cpu,
        busy_cores=(busy_after - busy_before) / elapsed,
    )
