"""Task helpers shared by every app, and the system heartbeat of the fleet."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery import shared_task, signals

logger = logging.getLogger(__name__)


def idempotent_task(**options: Any) -> Any:
    """A task safe to run twice: acknowledged after it runs, redelivered if its worker dies.

    Use only where the body checks database state before acting, so a second
    run of the same message is a no-op.
    """
    options.setdefault("acks_late", True)
    options.setdefault("reject_on_worker_lost", True)
    return shared_task(**options)


class WorkerHeartbeat:
    """Records in the database, every few seconds, that this worker is alive.

    /health/ready reads these rows: a worker that stops writing is reported
    missing after WORKER_STALE_AFTER seconds.
    """

    def __init__(self, hostname: str, queues: list[str], interval: float) -> None:
        self.hostname = hostname
        self.queues = queues
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="watchpost-heartbeat", daemon=True)

    def run(self) -> None:
        from django.db import close_old_connections, connection

        from checks.fleet import record_fleet_status
        from monitorsite.models import Heartbeat

        while not self.stopped.is_set():
            try:
                close_old_connections()
                Heartbeat.objects.record(
                    Heartbeat.Kind.WORKER, self.hostname, {"queues": self.queues}
                )
                # Judged here, not by a beat task: it must work when beat is gone.
                record_fleet_status()
            except Exception:
                logger.exception("could not record the worker heartbeat or fleet status")
            self.stopped.wait(self.interval)
        connection.close()


_heartbeat: WorkerHeartbeat | None = None


@signals.task_prerun.connect
@signals.task_postrun.connect
def recycle_database_connections(sender: Any = None, **kwargs: Any) -> None:
    """Around each task, close the connections that are broken, mid-transaction or too old.

    What Django's request signals do for a view; CONN_MAX_AGE (the setting
    DATABASE_CONN_MAX_AGE) says how long a worker keeps one, 0 closing it after
    every task (see monitorsite.celery).
    """
    if sender is not None and getattr(sender.request, "is_eager", False):
        return  # run inside its caller, in the caller's transaction
    from django.db import close_old_connections

    close_old_connections()


@signals.worker_ready.connect
def start_worker_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    global _heartbeat
    from django.conf import settings

    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values())
    _heartbeat = WorkerHeartbeat(hostname, queues, settings.WORKER_HEARTBEAT_INTERVAL)
    _heartbeat.thread.start()


@signals.worker_shutdown.connect
def stop_worker_heartbeat(**kwargs: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stopped.set()
