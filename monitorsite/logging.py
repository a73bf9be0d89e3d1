"""Log formats, and the ids (monitor, incident, task) carried into every line.

`log_context(monitor_id=...)` binds ids for the code inside it; Celery's
task_prerun binds the task id. With LOG_FORMAT=json every line is one JSON
object: time, level, logger, message and whichever ids are known.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

CONTEXT_IDS = ("monitor_id", "incident_id", "task_id")
# The mapping is replaced, never mutated, so one read-only default is safe.
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "watchpost_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**ids: Any) -> None:
    """Bind ids for the rest of the current context (a task run)."""
    _context.set({**_context.get(), **ids})


def clear() -> None:
    _context.set(MappingProxyType({}))


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{n}={getattr(record, n)}" for n in CONTEXT_IDS if hasattr(record, n))
        return f"{line} [{ids}]" if ids else line


class JsonFormatter(_BaseJsonFormatter):
    def __init__(self) -> None:
        # taskName is asyncio's, color_message uvicorn-style duplicates: noise in a log line.
        super().__init__(reserved_attrs=[*RESERVED_ATTRS, "taskName", "color_message"])

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        log_record["level"] = record.levelname
        log_record["logger"] = record.name
        # The message first after the fixed fields keeps lines readable by eye.
        log_record["message"] = log_record.pop("message", record.getMessage())


def connect_celery_signals() -> None:
    from celery import signals

    signals.task_prerun.connect(_bind_task, weak=False, dispatch_uid="watchpost-log-bind")
    signals.task_postrun.connect(_unbind_task, weak=False, dispatch_uid="watchpost-log-unbind")


def _bind_task(task_id: str | None = None, **kwargs: Any) -> None:
    clear()
    bind(task_id=task_id)


def _unbind_task(**kwargs: Any) -> None:
    from monitorsite import metrics

    metrics.flush()
    clear()
