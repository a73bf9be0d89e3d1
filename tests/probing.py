"""What the probe tests share: saving a validated monitor, and judging it once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from checks.models import Monitor, Region
from checks.runner import Resources, Run, run_batch
from checks.services import judge, plan_for, run_now


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


def check_in_turn(*monitors: Monitor) -> list[tuple[str, str]]:
    """Outcomes and reasons of dry runs one after another in one worker, sharing its
    connections (the keep-alive pool lives as long as the worker)."""
    region = Region.default()
    plans = [plan_for(monitor, {}) for monitor in monitors]
    runs = [Run(plan.spec, datetime.now(UTC)) for plan in plans]

    async def one_by_one() -> None:
        resources = Resources(4)
        try:
            for run in runs:
                await run_batch([run], resources)
        finally:
            await resources.close()

    asyncio.run(one_by_one())
    verdicts = [judge(plan, run, region) for plan, run in zip(plans, runs, strict=True)]
    return [(verdict.outcome, verdict.reason) for verdict in verdicts]


def shown_pct(value: float) -> str:
    """A percentage as reasons show it: whole above 10 %, one decimal below."""
    return f"{round(value) if value >= 10 else round(value, 1):g}%"


def everything_said(run: Run, reason: str) -> str:
    """Every text a probe run shows a person (to look for leaked secrets)."""
    observation = run.observation
    assert observation is not None
    return " ".join([reason, observation.summary, observation.error or "", repr(observation.info)])
