"""The tiny Celery app that bench/embedded_broker.py runs a worker of, once per broker.

The worker reads its broker from BENCH_BROKER_URL and BENCH_TRANSPORT_OPTIONS
(JSON). It consumes the same four queues as Watchpost's worker, because a
polling transport's idle cost grows with the number of queues it polls.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

QUEUES = ("dispatch", "probes", "notify", "default")
# Published to but consumed by nobody: measures the cost of sending alone.
HOLD_QUEUE = "bench_hold"
TASK_QUEUE = "probes"
NOOP = "bench.noop"
RECORD = "bench.record"
# Fixed width, so the size of a record file says how many tasks have run.
LINE_FORMAT = "{:017.6f} {:017.6f}\n"
LINE_BYTES = len(LINE_FORMAT.format(0.0, 0.0))


def make_app(broker_url: str, transport_options: dict[str, Any]) -> Celery:
    if broker_url.startswith("sqla+") and "polling_interval" in transport_options:
        # kombu's SQLAlchemy transport hands every transport option to
        # create_engine(), which rejects polling_interval; the class attribute
        # is the only way to change it from its 1 s default.
        from kombu.transport.sqlalchemy import Transport

        transport_options = dict(transport_options)
        Transport.polling_interval = transport_options.pop("polling_interval")
    app = Celery("brokerbench", broker=broker_url, set_as_current=False)
    # The settings of monitorsite/celery.py that change how a message travels.
    app.conf.update(
        broker_transport_options=transport_options,
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name)
            for name in (*QUEUES, HOLD_QUEUE)
        ],
        task_default_queue="default",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        worker_prefetch_multiplier=1,
        task_acks_late=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app(
    os.environ.get("BENCH_BROKER_URL", "memory://"),
    json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS", "{}")),
)


@app.task(name=NOOP)
def noop() -> None:
    """Does nothing: what is left is the broker's cost."""


@app.task(name=RECORD)
def record(path: str, sent_at: float) -> None:
    """Appends 'sent_at started_at' to path; the bench counts and reads the lines."""
    started_at = time.time()
    line = LINE_FORMAT.format(sent_at, started_at).encode()
    # One write with O_APPEND is one atomic append, so the two pool processes
    # never interleave their lines.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
