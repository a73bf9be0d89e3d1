"""A worker keeps its PostgreSQL connection across tasks, as a web thread does across requests.

Celery's Django fixup would close it around every task: a new backend (a fork
on the database server) for every probe batch and every one-second tick.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from django.db import connection

from incidents.tasks import process_status_changes
from tests.e2e.workers import running_worker, wait_until, worker_env

TASKS = 20
DONE = re.compile(rb"process_status_changes\[[^\]]+\] succeeded")

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def sessions() -> int:
    """Connections ever made to the test database (PostgreSQL's own count)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def new_connections_for_tasks(tmp_path: Path, max_age: int) -> int:
    """Run TASKS tasks that query the database on a real worker; connections made meanwhile."""
    # LOG_LEVEL=DEBUG: the worker logs each task it ran.
    env = worker_env(tmp_path, DATABASE_CONN_MAX_AGE=str(max_age), LOG_LEVEL="DEBUG")
    log = tmp_path / f"worker-{max_age}.log"

    def ran(count: int) -> bool:
        return len(DONE.findall(log.read_bytes())) >= count

    with running_worker(env, "default", f"conns-{max_age}", log):
        # The first task opens the pool process's connection; count from after it.
        process_status_changes.apply_async(queue="default")
        wait_until(lambda: ran(1), 90, "the first task", log)
        time.sleep(1.5)  # PostgreSQL reports a session's start with its next stats flush
        before = sessions()
        for _ in range(TASKS):
            process_status_changes.apply_async(queue="default")
        wait_until(lambda: ran(TASKS + 1), 90, "the tasks", log)
        time.sleep(1.5)
        return sessions() - before


def test_a_worker_reuses_its_database_connection_across_tasks(tmp_path: Path) -> None:
    # The worker's heartbeat thread has its own connection, made once.
    assert new_connections_for_tasks(tmp_path, max_age=60) <= 2


def test_with_no_max_age_each_task_gets_a_fresh_connection(tmp_path: Path) -> None:
    assert new_connections_for_tasks(tmp_path, max_age=0) >= TASKS
