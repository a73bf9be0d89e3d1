"""What the probe tests share: saving a validated monitor, and judging it once."""

from __future__ import annotations

from typing import Any

from checks.models import Monitor
from checks.runner import Run
from checks.services import run_now


def saved_monitor(kind: str, target: str, name: str, **fields: Any) -> Monitor:
    """A monitor saved the way the admin saves one: only after full validation."""
    monitor = Monitor(name=name, kind=kind, target=target, **fields)
    monitor.full_clean()
    monitor.save()
    return monitor


def check(monitor: Monitor) -> tuple[str, str]:
    """The outcome and reason of one dry run, as "Run now" shows them."""
    _run, verdict = run_now(monitor)
    return verdict.outcome, verdict.reason


def shown_pct(value: float) -> str:
    """A percentage as reasons show it: whole above 10 %, one decimal below."""
    return f"{round(value) if value >= 10 else round(value, 1):g}%"


def everything_said(run: Run, reason: str) -> str:
    """Every text a probe run shows a person (to look for leaked secrets)."""
    observation = run.observation
    assert observation is not None
    return " ".join([reason, observation.summary, observation.error or "", repr(observation.info)])
