"""A probe worker killed mid-batch: the batch is redelivered and written once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from checks.models import Monitor, ProbeResult
from checks.tasks import probe_batch
from monitorsite.celery import app as celery_app
from tests.targets import HttpTarget

REPO = Path(__file__).resolve().parents[2]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{log.read_text()[-3000:]}")


@pytest.fixture
def worker(transactional_db: None, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("probes")
    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["CELERY_BROKER_URL"] = celery_app.conf.broker_url
    env["WATCHPOST_DATA_DIR"] = str(tmp_path)
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "monitorsite", "worker", "--queues", "probes",
         "--concurrency", "1", "--hostname", f"loss-{os.getpid()}@%h", "--loglevel", "INFO"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    process.args_log = tmp_path / "worker.log"  # type: ignore[attr-defined]
    yield process
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_a_batch_whose_worker_dies_is_run_again_and_stored_once(
    worker: subprocess.Popen[bytes], target: HttpTarget
) -> None:
    route = target.route("/slow", body="ok", delay=3)
    monitor = Monitor.objects.create(
        name="slow api", kind="http", target=target.url("/slow"), interval=60, timeout=10
    )
    slot = datetime.now(UTC).replace(microsecond=0)
    probe_batch.apply_async(args=["default", [[monitor.pk, slot.isoformat()]]], queue="probes")
    log = worker.args_log  # type: ignore[attr-defined]
    wait_until(lambda: route.hits >= 1, 120, "the probe to reach the target", log)
    (child,) = wait_until(lambda: children(worker.pid), 10, "the pool process", log)
    os.kill(child, signal.SIGKILL)  # the process running the batch dies mid-probe
    wait_until(lambda: ProbeResult.objects.filter(monitor=monitor).exists(), 60, "a result", log)
    time.sleep(1)  # would a duplicate land?
    assert route.hits == 2  # the batch ran again after its worker was lost
    result = ProbeResult.objects.get(monitor=monitor)
    assert result.scheduled_at == slot
    assert result.outcome == "ok"
