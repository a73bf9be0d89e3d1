"""Structured logs: one JSON object per line, with the ids of what the line is about."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from celery import signals

from monitorsite.logging import ContextFilter, JsonFormatter, TextFormatter, log_context

REPO = Path(__file__).resolve().parents[2]


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("checks.probes", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    ContextFilter().filter(rec)
    return rec


def test_it_writes_one_json_object_with_the_context_ids() -> None:
    with log_context(monitor_id=42, incident_id=7):
        line = JsonFormatter().format(record("probe failed: %s", reason="timeout"))
    data = json.loads(line)
    assert data["message"] == "probe failed: %s"
    assert data["level"] == "WARNING"
    assert data["logger"] == "checks.probes"
    assert data["monitor_id"] == 42 and data["incident_id"] == 7
    assert data["reason"] == "timeout"
    assert data["time"].endswith("+00:00")
    assert "\n" not in line


def test_it_forgets_the_ids_when_the_context_ends() -> None:
    with log_context(monitor_id=1):
        pass
    data = json.loads(JsonFormatter().format(record("later")))
    assert "monitor_id" not in data


def test_it_tags_lines_logged_inside_a_task_with_the_task_id() -> None:
    signals.task_prerun.send(sender=None, task_id="c0ffee-1", task=None)
    try:
        data = json.loads(JsonFormatter().format(record("inside the task")))
        text = TextFormatter().format(record("inside the task"))
    finally:
        signals.task_postrun.send(sender=None, task_id="c0ffee-1", task=None)
    assert data["task_id"] == "c0ffee-1"
    assert text.endswith("inside the task [task_id=c0ffee-1]")
    assert "task_id" not in json.loads(JsonFormatter().format(record("after the task")))


def test_it_logs_json_lines_when_log_format_is_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {
        "LOG_FORMAT": "json",
        "WATCHPOST_DATA_DIR": str(tmp_path),
        "CELERY_BROKER_URL": "filesystem://",
        "DJANGO_SETTINGS_MODULE": "monitorsite.settings",
    }
    script = (
        "import django, logging; django.setup()\n"
        "from monitorsite.logging import log_context\n"
        "with log_context(monitor_id=9):\n"
        "    logging.getLogger('checks').error('target down')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert {"message": "target down", "monitor_id": 9, "level": "ERROR"}.items() <= lines[
        -1
    ].items()
