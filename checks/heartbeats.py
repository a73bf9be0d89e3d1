"""Heartbeat monitors: turning pings, and the pings that did not come, into results.

The ping view only stores Ping rows. Every couple of seconds the sweep

1. claims unprocessed pings with a conditional UPDATE (`… WHERE processed_at IS
   NULL`), so several workers can sweep at once and none handles a ping twice;
   each finishing ping becomes a result at its `received_at` (ok, or a failure
   with the job's exit code and first line of output), and the monitor's
   `last_ping_at` / `last_start_at` move forward;
2. looks for monitors whose next ping is overdue (`period` or `cron` plus
   `grace`), or that started and did not finish within `grace`, and records a
   failing result at that deadline, so repeated sweeps write it once.

Both go through services.record_batch, like probe results: the same hysteresis,
StatusChange rows and incidents. Runs carry no `started_at` (nothing was
dispatched), so they add no sample to the dispatch-lag metric; the stored
result's started_at equals its scheduled_at.

Thresholds: `failure_threshold` counts consecutive bad heartbeat events, each
missed deadline, unfinished start or failure report counting once. With 1 a
monitor is down at the first missed deadline (Healthchecks' behaviour; the
grace period is the tolerance for lateness). With the model's default of 2 it
is down when two runs in a row were missed or failed, i.e. one period after
the first missed deadline: useful for a flaky job, slow for a daily one, so
heartbeat monitors are best created with 1. A monitor that keeps missing adds
one event per expected run; after a Watchpost outage only the latest missed
deadline is recorded, not one per run it slept through.

Bad events are critical results stated in the sweep's own words
(`Observation.problems`): there is no measurement here for a threshold to judge.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from checks import services
from checks.models import Monitor, Ping, Region, RegionState
from checks.probes.base import Observation
from checks.probes.heartbeat import HeartbeatConfig, config_of
from checks.runner import Run

logger = logging.getLogger(__name__)

CLAIM_BATCH = 1000
MAX_BATCHES = 20
# A deadline counts as missed only a few seconds after it passed. A ping stamped
# just before it may still be waiting to commit (SQLite queues writers), and
# once the miss is stored that older ping could no longer move the monitor's
# state: record_batch ignores results older than the latest one.
COMMIT_SLACK = timedelta(seconds=3)
REASON_BODY_LIMIT = 200


@dataclass
class SweepReport:
    pings: int = 0
    missed: int = 0


@dataclass(frozen=True)
class Miss:
    deadline: datetime
    reason: str


def sweep(now: datetime | None = None) -> SweepReport:
    """Process new pings, then record overdue heartbeats; safe to run concurrently."""
    pings = process_pings(now or timezone.now())
    # Overdue is judged after the pings are in, so a ping that just came counts.
    missed = record_missed(now or timezone.now())
    return SweepReport(pings=pings, missed=missed)


# --- 1. Pings ------------------------------------------------------------------


def process_pings(now: datetime) -> int:
    done = 0
    for _ in range(MAX_BATCHES):
        ids = list(
            Ping.objects.unprocessed()
            .order_by("received_at", "id")
            .values_list("id", flat=True)[:CLAIM_BATCH]
        )
        if not ids:
            break
        # Claim and record in one transaction: if recording fails, the claim
        # rolls back and the next sweep retries these pings instead of losing them.
        with transaction.atomic():
            claimed = claim(ids, now)
            if claimed:
                apply_pings(list(Ping.objects.filter(id__in=claimed).order_by("received_at", "id")))
        done += len(claimed)
        if len(ids) < CLAIM_BATCH:
            break
    return done


def claim(ids: Sequence[int], now: datetime) -> list[int]:
    """Mark these pings processed; returns the ids this call got.

    The `processed_at IS NULL` guard is the lock: a second sweep updating the
    same rows waits for the first to commit, then finds them taken.
    """
    marks = ", ".join(["%s"] * len(ids))
    sql = (
        f"UPDATE {Ping._meta.db_table} SET processed_at = %s "  # noqa: S608
        f"WHERE id IN ({marks}) AND processed_at IS NULL RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(now), *ids])
        return [row[0] for row in cursor.fetchall()]


def apply_pings(pings: list[Ping]) -> None:
    monitors = (
        Monitor.objects.filter(id__in={p.monitor_id for p in pings}, kind=Monitor.Kind.HEARTBEAT)
        .prefetch_related("assertions")
        .in_bulk()
    )
    region = Region.default()
    plans: dict[int, services.Plan] = {}
    # record_batch takes one run per monitor, so a monitor's pings of this
    # batch go in successive rounds, oldest first.
    rounds: list[list[Run]] = []
    seen: dict[int, int] = defaultdict(int)
    started: dict[int, datetime] = {}
    finished: dict[int, datetime] = {}
    for ping in pings:
        monitor = monitors.get(ping.monitor_id)
        if monitor is None:  # no longer a heartbeat monitor
            continue
        if ping.kind == Ping.Kind.START:
            started[monitor.pk] = ping.received_at
            continue
        last_start = started.get(monitor.pk, monitor.last_start_at)
        last_finish = finished.get(monitor.pk, monitor.last_ping_at)
        finished[monitor.pk] = ping.received_at
        if monitor.paused:  # paused monitors keep their pings but judge nothing
            continue
        if monitor.pk not in plans:
            plans[monitor.pk] = services.plan_for(monitor, {})
        observation = ping_observation(ping, last_start, last_finish)
        run = Run(plans[monitor.pk].spec, ping.received_at, observation=observation)
        depth = seen[monitor.pk]
        seen[monitor.pk] += 1
        if depth == len(rounds):
            rounds.append([])
        rounds[depth].append(run)
    for runs in rounds:
        services.record_batch(plans, runs, region)
    # After record_batch, which locks region states then monitors: same order.
    remember(started, finished)


def ping_observation(
    ping: Ping, last_start: datetime | None, last_finish: datetime | None
) -> Observation:
    info = {"ping_id": ping.pk}
    if ping.exit_code is not None:
        info["exit_code"] = ping.exit_code
    if ping.failed:
        code = f" (exit code {ping.exit_code})" if ping.exit_code is not None else ""
        said = first_line(ping.body)
        reason = f"job reported failure{code}" + (f": {said}" if said else "")
        return Observation(summary=reason, problems=[reason], info=info)
    summary = "ping received"
    running = last_start and (last_finish is None or last_start > last_finish)
    if running and last_start and last_start <= ping.received_at:
        summary = f"job finished after {format_duration(ping.received_at - last_start)}"
    return Observation(summary=summary, info=info)


def first_line(body: str) -> str:
    for line in body.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= REASON_BODY_LIMIT else line[: REASON_BODY_LIMIT - 1] + "…"
    return ""


def remember(started: dict[int, datetime], finished: dict[int, datetime]) -> None:
    ids = sorted(started.keys() | finished.keys())
    if not ids:
        return
    changed = []
    rows = Monitor.objects.select_for_update().filter(id__in=ids).order_by("id")
    for monitor in rows.only("id", "last_ping_at", "last_start_at"):
        start, finish = started.get(monitor.pk), finished.get(monitor.pk)
        moved = False
        if start and (monitor.last_start_at is None or start > monitor.last_start_at):
            monitor.last_start_at, moved = start, True
        if finish and (monitor.last_ping_at is None or finish > monitor.last_ping_at):
            monitor.last_ping_at, moved = finish, True
        if moved:
            changed.append(monitor)
    Monitor.objects.bulk_update(changed, ["last_ping_at", "last_start_at"])


# --- 2. Missed pings ---------------------------------------------------------------


def record_missed(now: datetime) -> int:
    region = Region.default()
    heartbeats = list(Monitor.objects.active().filter(kind=Monitor.Kind.HEARTBEAT))
    if not heartbeats:
        return 0
    # A ping not yet processed may answer the deadline: leave it to the next sweep.
    waiting = set(Ping.objects.unprocessed().values_list("monitor_id", flat=True))
    recorded = dict(
        RegionState.objects.filter(region=region, monitor__kind=Monitor.Kind.HEARTBEAT)
        .exclude(last_scheduled_at=None)
        .values_list("monitor_id", "last_scheduled_at")
    )
    misses: dict[int, Miss] = {}
    for monitor in heartbeats:
        if monitor.pk in waiting:
            continue
        try:
            miss = missed_deadline(monitor, now)
        except Exception:  # e.g. options saved before validation: this monitor only
            logger.exception(
                "cannot judge heartbeat %s", monitor.name, extra={"monitor_id": monitor.pk}
            )
            continue
        if miss and (monitor.pk not in recorded or miss.deadline > recorded[monitor.pk]):
            misses[monitor.pk] = miss
    if not misses:
        return 0
    return len(record_misses(misses, region))


def record_misses(misses: dict[int, Miss], region: Region) -> list[int]:
    monitors = Monitor.objects.filter(id__in=misses).prefetch_related("assertions")
    plans = {monitor.pk: services.plan_for(monitor, {}) for monitor in monitors}
    runs = []
    for monitor_id, plan in plans.items():
        miss = misses[monitor_id]
        observation = Observation(summary=miss.reason, problems=[miss.reason])
        runs.append(Run(plan.spec, miss.deadline, observation=observation))
    services.record_batch(plans, runs, region)
    return list(plans)


def missed_deadline(monitor: Monitor, now: datetime) -> Miss | None:
    """The latest deadline this monitor has missed by `now`, if any."""
    config = config_of(monitor.options or {})
    cutoff = now - COMMIT_SLACK
    misses = [
        miss
        for miss in (
            schedule_miss(monitor, config, cutoff, now),
            start_miss(monitor, config, cutoff, now),
        )
        if miss is not None
    ]
    return max(misses, key=lambda miss: miss.deadline, default=None)


def expected_since(monitor: Monitor) -> datetime:
    """When the current wait for a ping began: the last finish, creation, or resuming.

    A pending monitor (new, or resumed after a pause) gets a full period from
    when it became pending, so it is not judged by pings from before.
    """
    since = monitor.last_ping_at or monitor.created_at
    if monitor.status == Monitor.Status.PENDING:
        since = max(since, monitor.status_since)
    return since


def schedule_miss(
    monitor: Monitor, config: HeartbeatConfig, cutoff: datetime, now: datetime
) -> Miss | None:
    since = expected_since(monitor)
    grace = config.grace_delta
    if config.period is not None:
        period = timedelta(seconds=config.period)
        if since + period + grace > cutoff:
            return None
        runs = (cutoff - since - grace) // period
        expected = since + runs * period
        detail = f"expected every {format_duration(period)}, grace {format_duration(grace)}"
    else:
        expected = config.next_expected(since)
        if expected + grace > cutoff:
            return None
        expected = max(expected, config.last_expected(cutoff - grace))
        local = expected.astimezone(config.zone)
        detail = (
            f"expected at {local:%Y-%m-%d %H:%M %Z} by cron {config.cron!r} "
            f"in {config.timezone}, grace {format_duration(grace)}"
        )
    if monitor.last_ping_at is None:
        return Miss(expected + grace, f"no ping received yet ({detail})")
    return Miss(
        expected + grace, f"no ping for {format_duration(now - monitor.last_ping_at)} ({detail})"
    )


def start_miss(
    monitor: Monitor, config: HeartbeatConfig, cutoff: datetime, now: datetime
) -> Miss | None:
    started = monitor.last_start_at
    if started is None or (monitor.last_ping_at is not None and monitor.last_ping_at >= started):
        return None
    if monitor.status == Monitor.Status.PENDING and started < monitor.status_since:
        return None  # a start from before the monitor was resumed
    deadline = started + config.grace_delta
    if deadline > cutoff:
        return None
    return Miss(
        deadline,
        f"started {format_duration(now - started)} ago and has not finished "
        f"(grace {format_duration(config.grace_delta)})",
    )


def format_duration(span: timedelta) -> str:
    """`45 s`, `7 min`, `2 min 30 s`, `3 h 5 min`, `2 days 4 h`: two units at most."""
    seconds = max(int(span.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min" + (f" {rest} s" if rest and minutes < 10 else "")
    if seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        return f"{hours} h" + (f" {rest // 60} min" if rest // 60 else "")
    days, rest = divmod(seconds, 86400)
    unit = "day" if days == 1 else "days"
    return f"{days} {unit}" + (f" {rest // 3600} h" if rest // 3600 else "")
