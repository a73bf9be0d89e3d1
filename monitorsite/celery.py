"""The one Celery app: queues, routes and limits are declared here and nowhere else."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitorsite.settings")

app = Celery("watchpost")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUES = ("dispatch", "probes", "notify", "default")

app.conf.update(
    # Each queue on its own direct exchange and key: a shared key would copy
    # every message into every queue.
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
    task_default_queue="default",
    # Routes by glob: a new task lands on the right queue by its name alone.
    task_routes={
        "checks.tasks.dispatch_*": {"queue": "dispatch"},
        "checks.tasks.probe_*": {"queue": "probes"},
        "alerts.tasks.deliver_*": {"queue": "notify"},
        "incidents.statuspage.tasks.deliver_*": {"queue": "notify"},
        "*": {"queue": "default"},
    },
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    result_backend=None,
    worker_prefetch_multiplier=1,
    # acks_late is switched on per task, only for the idempotent ones
    # (see monitorsite.tasks.idempotent_task).
    task_acks_late=False,
    task_track_started=False,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
)
# Celery's Django fixup closes every database connection before and after each
# task unless CELERY_DB_REUSE_MAX is set: a new PostgreSQL backend (a fork and a
# cold catalog cache) for every probe batch and every one-second tick. Set out
# of reach, the fixup only drops what a forked pool process inherited, and
# monitorsite.tasks closes connections between tasks the way Django does
# between requests: when broken, left in a transaction or past CONN_MAX_AGE.
app.conf["CELERY_DB_REUSE_MAX"] = 2**62
app.autodiscover_tasks()
