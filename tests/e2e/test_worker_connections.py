"""A worker keeps its PostgreSQL connection across tasks, as a web thread does across requests.

Celery's Django fixup would close it around every task: a new backend (a fork
on the database server) for every probe batch and every one-second tick.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection

from incidents.tasks import process_status_changes
from monitorsite.celery import app as celery_app

REPO = Path(__file__).resolve().parents[2]
TASKS = 20


def sessions() -> int:
    """Connections ever made to the test database (PostgreSQL's own count)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def run_tasks_on_a_worker(tmp_path: Path, max_age: int) -> int:
    """Start a worker, run TASKS tasks that query the database; new connections made meanwhile."""
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("default")
    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["CELERY_BROKER_URL"] = celery_app.conf.broker_url
    env["WATCHPOST_DATA_DIR"] = str(tmp_path)
    env["DATABASE_CONN_MAX_AGE"] = str(max_age)
    env["LOG_LEVEL"] = "DEBUG"  # the worker logs each task it ran
    log_path = tmp_path / f"worker-{max_age}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "monitorsite", "worker", "--queues", "default",
         "--concurrency", "1", "--hostname", f"conns-{os.getpid()}-{max_age}@%h",
         "--loglevel", "INFO"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    done = re.compile(rb"process_status_changes\[[^\]]+\] succeeded")
    try:
        # The first task opens the pool process's connection; count from after it.
        process_status_changes.apply_async(queue="default")
        wait_for(lambda: len(done.findall(log_path.read_bytes())) >= 1, log_path)
        time.sleep(1.5)  # PostgreSQL reports a session's start with its next stats flush
        before = sessions()
        for _ in range(TASKS):
            process_status_changes.apply_async(queue="default")
        wait_for(lambda: len(done.findall(log_path.read_bytes())) >= TASKS + 1, log_path)
        time.sleep(1.5)
        return sessions() - before
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(predicate: Callable[[], bool], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"the worker did not run the tasks in time; its log:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_reuses_its_database_connection_across_tasks(tmp_path: Path) -> None:
    # The worker's heartbeat thread has its own connection, made once.
    assert run_tasks_on_a_worker(tmp_path, max_age=60) <= 2


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_with_no_max_age_each_task_gets_a_fresh_connection(tmp_path: Path) -> None:
    assert run_tasks_on_a_worker(tmp_path, max_age=0) >= TASKS
