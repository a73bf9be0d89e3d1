"""Heartbeat (push) monitors: the job pings Watchpost, Watchpost never probes it.

A heartbeat expects a ping either every `period` seconds or at the times of a
`cron` expression (read in `timezone`), and allows each one `grace` seconds of
lateness. The ping views store pings; checks.heartbeats turns them, and the
pings that did not come, into results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from checks.probes.base import Observation, OptionErrors, Options, Probe, ProbeSpec

KNOWN = {"period", "grace", "cron", "timezone"}
MIN_PERIOD = 10
MAX_PERIOD = 366 * 86400  # a yearly job, a day late
MIN_GRACE = 10
MAX_GRACE = 366 * 86400
DEFAULT_GRACE = 60
CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


@dataclass(frozen=True)
class HeartbeatConfig:
    period: int | None
    cron: str | None
    timezone: str
    grace: int

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_expected(self, after: datetime) -> datetime:
        """The first time a ping is expected strictly after `after` (cron schedules)."""
        assert self.cron is not None
        return croniter(self.cron, after.astimezone(self.zone)).get_next(datetime)

    def last_expected(self, before: datetime) -> datetime:
        """The last time a ping was expected strictly before `before` (cron schedules)."""
        assert self.cron is not None
        return croniter(self.cron, before.astimezone(self.zone)).get_prev(datetime)

    @property
    def grace_delta(self) -> timedelta:
        return timedelta(seconds=self.grace)


def parse(target: str, raw: Any, errors: OptionErrors) -> HeartbeatConfig:
    if target:
        errors.target(
            "must be blank: a heartbeat monitor is not probed, the job calls its ping URL"
        )
    opts = Options(raw, KNOWN, errors)
    period = seconds(opts, "period", None, MIN_PERIOD, MAX_PERIOD)
    grace = seconds(opts, "grace", DEFAULT_GRACE, MIN_GRACE, MAX_GRACE)
    cron = opts.str("cron")
    zone = opts.str("timezone", "UTC")
    present = {name for name, value in opts.raw.items() if value not in (None, "")}
    if "period" in present and "cron" in present:
        errors.option("cron", "set either period or cron, not both")
    elif "period" not in present and "cron" not in present:
        errors.option(
            "period",
            "set period (seconds between pings, at least 10) "
            'or cron (when the job runs, e.g. "0 3 * * *")',
        )
    if cron:
        check_cron(cron, errors)
    if "timezone" in present:
        if "cron" not in present:
            errors.option("timezone", "is only used with cron")
        elif zone and not is_timezone(zone):
            errors.option("timezone", f"{zone!r} is not an IANA time zone such as Europe/Berlin")
    return HeartbeatConfig(period=period, cron=cron or None, timezone=zone or "UTC", grace=grace)


def seconds(opts: Options, name: str, default: int | None, low: int, high: int) -> Any:
    value = opts.number(name, default, 0, math.inf, integer=True)
    if value is not None and not low <= value <= high:
        span = f"{low} s and {high // 86400} days"
        opts.errors.option(name, f"must be between {span} (in seconds), got {value}")
        return default
    return value


def check_cron(expression: str, errors: OptionErrors) -> None:
    fields = expression.split()
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0].lower() in CRON_ALIASES)):
        errors.option(
            "cron",
            f"{expression!r} must have 5 fields (minute hour day-of-month month day-of-week) "
            f"or be one of {', '.join(CRON_ALIASES)}",
        )
        return
    try:
        croniter(expression).get_next(datetime)
    except CroniterBadDateError:
        errors.option("cron", f"{expression!r} never matches a date")
    except (CroniterError, ValueError, KeyError) as exc:
        errors.option("cron", f"{expression!r} is not a valid cron expression ({exc})")


def is_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def config_of(options: dict[str, Any]) -> HeartbeatConfig:
    """The schedule of a saved monitor; raises ValueError if its options are invalid."""
    errors = OptionErrors()
    config = parse("", options, errors)
    if errors.errors:
        raise ValueError("; ".join(m for ms in errors.errors.values() for m in ms))
    return config


class HeartbeatProbe(Probe):
    kind = "heartbeat"
    target_label = "ping URL"

    def validate(self, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        errors = OptionErrors()
        parse(target, options, errors)
        errors.raise_if_any()
        return "", options

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        # The dispatcher never schedules heartbeats; this answers "Run now".
        return Observation.failed(
            "heartbeat monitors are not probed: they wait for the job to call its ping URL"
        )


PROBE = HeartbeatProbe()
