"""A probe worker killed mid-batch: the batch is redelivered and written once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from checks.models import Monitor, ProbeResult
from checks.tasks import probe_batch
from tests.e2e.workers import running_worker, wait_until, worker_env
from tests.targets import HttpTarget


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


@pytest.fixture
def worker(transactional_db: None, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path / "worker.log"
    with running_worker(worker_env(tmp_path), "probes", "loss", log) as process:
        process.args_log = log  # type: ignore[attr-defined]
        yield process


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
