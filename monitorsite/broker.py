"""Talking to the Celery broker outside of tasks: health and queue depth."""

from __future__ import annotations

from monitorsite.celery import app


def queue_depths(timeout: float = 3.0) -> dict[str, int]:
    """Messages waiting in each declared queue; raises if the broker does not answer."""
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        channel = conn.default_channel
        depths = {}
        for queue in app.conf.task_queues:
            # Declaring with Celery's own definition is a no-op for an existing
            # queue and answers with its message count on every transport.
            ok = queue.bind(channel).queue_declare()
            depths[queue.name] = ok.message_count if ok else 0
        return depths
