"""Real Celery workers for end-to-end tests: started against the test database, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from monitorsite.celery import app as celery_app

REPO = Path(__file__).resolve().parents[2]


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker that uses this test's database and broker."""
    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["CELERY_BROKER_URL"] = celery_app.conf.broker_url
    env["WATCHPOST_DATA_DIR"] = str(tmp_path)
    return env | extra


@contextlib.contextmanager
def running_worker(
    env: dict[str, str], queues: str, name: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`celery worker -Q <queues> -c 1` logging to `log`; stopped (killed if need be) after."""
    with celery_app.connection_for_write() as conn:
        for queue in queues.split(","):
            conn.default_channel.queue_purge(queue)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "monitorsite", "worker", "--queues", queues,
             "--concurrency", "1", "--hostname", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    """The predicate's first true value, or the test fails with the worker's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{log.read_text()[-3000:]}")
