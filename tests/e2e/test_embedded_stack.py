"""`make run` on the embedded default: web, worker and beat come up, work, and stop on Ctrl-C."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "smoke-test-Passw0rd"


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; stack output:\n{log.read_text()[-4000:]}")


def get_json(url: str) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except OSError:
        return None


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes], Path]]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MAKEFLAGS", "MAKELEVEL"}
    }
    env |= {
        "WATCHPOST_DATA_DIR": str(tmp_path / "data"),
        "WATCHPOST_BIND": f"127.0.0.1:{port}",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "WATCHPOST_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    log = tmp_path / "stack.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield f"http://127.0.0.1:{port}", tmp_path / "data", process, log
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_in(base: str) -> int:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/admin/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "next": "/admin/",
        }
    ).encode()
    request = urllib.request.Request(f"{base}/admin/login/", data=form, headers={"Referer": base})
    response = opener.open(request, timeout=10)
    assert "Log out" in response.read().decode()
    return response.status


def query(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    database = data_dir / "watchpost.sqlite3"
    if not database.exists():
        return []
    with sqlite3.connect(database, timeout=5) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def demo_results(data_dir: Path) -> list[tuple[Any, ...]]:
    return query(
        data_dir,
        "SELECT m.name, r.outcome, r.reason FROM checks_proberesult r "
        "JOIN checks_monitor m ON m.id = r.monitor_id WHERE m.name = 'Watchpost web'",
    )


@pytest.mark.slow
def test_it_runs_web_worker_and_beat_and_stops_on_ctrl_c(stack) -> None:
    base, data_dir, process, log = stack
    # Beat fired the dispatcher tick through the embedded broker, the worker
    # claimed the demo monitor and ran its probe batch, and the result landed
    # in the SQLite database.
    results = wait_for("a demo monitor's probe result", lambda: demo_results(data_dir), 90, log)
    name, outcome, reason = results[0]
    assert outcome == "ok", reason
    assert reason.startswith("HTTP 200 in")
    statuses = dict(query(data_dir, "SELECT name, status FROM checks_monitor"))
    assert statuses["Watchpost web"] == "up"
    ready = wait_for(
        "/health/ready to answer 200",
        lambda: (r := get_json(f"{base}/health/ready")) and r[0] == 200 and r,
        60,
        log,
    )
    components = ready[1]["components"]
    assert components["broker"]["transport"] == "filesystem"
    assert components["database"]["vendor"] == "sqlite"
    assert log_in(base) == 200
    # The demo status page, by host, shows the demo monitors as components.
    port = base.rpartition(":")[2]
    request = urllib.request.Request(f"{base}/", headers={"Host": f"status.localhost:{port}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        html = response.read().decode()
    assert "Watchpost status" in html
    assert "Web" in html and "Monitoring" in html
    assert "Watchpost readiness" not in html  # monitor names stay private

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    process.wait(timeout=60)
    output = log.read_text()
    for name in ("web.1", "worker.1", "beat.1"):
        assert re.search(rf"{name} stopped", output), output[-3000:]
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of the stack is left running
