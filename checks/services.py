"""Turning probe runs into stored results and monitor state.

A batch's results go to the database in one multi-row insert that skips any
(monitor, region, slot) already stored, so a redelivered batch writes nothing
twice. Only the results actually inserted move state: streaks per region give
hysteresis, and a monitor goes down only when `confirm_regions` regions agree.
A change of status writes a StatusChange row in the same transaction.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.utils import timezone

from checks.assertions import Rule, Verdict, evaluate
from checks.bulk import bound_cursor, floats, in_ids, update_rows
from checks.models import (
    Assertion,
    Monitor,
    Outcome,
    ProbeResult,
    Region,
    RegionState,
    StatusChange,
)
from checks.probes import get_probe
from checks.probes.base import ProbeSpec
from checks.runner import Run, execute, observe_now
from checks.signals import announce_status_changes
from monitorsite import metrics

logger = logging.getLogger(__name__)
Status = Monitor.Status


@dataclass
class Plan:
    """A monitor ready to probe: its spec and the rules that judge it."""

    spec: ProbeSpec
    rules: list[Rule]


def plan_monitors(monitor_ids: Sequence[int], region: Region) -> dict[int, Plan]:
    # This runs for every batch of probes: plain rows in one query, not model
    # instances, and the assertions only of monitors that have any.
    if not monitor_ids:
        return {}
    where, params = in_ids("m.id", monitor_ids)
    sql = (
        "SELECT m.id, m.kind, m.target, m.options, m.timeout, s.memory, EXISTS "  # noqa: S608
        f"(SELECT 1 FROM {Assertion._meta.db_table} a WHERE a.monitor_id = m.id) "
        f"FROM {Monitor._meta.db_table} m LEFT JOIN {RegionState._meta.db_table} s "
        f"ON s.monitor_id = m.id AND s.region_id = %s WHERE {where} AND NOT m.paused"
    )
    with bound_cursor() as cursor:
        cursor.execute(sql, [region.pk, *params])
        monitors = cursor.fetchall()
    explicit = explicit_rules([row[0] for row in monitors if row[6]])
    plans = {}
    for monitor_id, kind, target, options, timeout, memory, _ in monitors:
        spec = ProbeSpec(
            monitor_id, kind, target, _json(options) or {}, timeout, _json(memory) or {}
        )
        plans[monitor_id] = Plan(
            spec, [*get_probe(kind).implicit_rules(spec), *explicit[monitor_id]]
        )
    return plans


def _json(value: Any) -> Any:
    """A JSON column read with a raw cursor: text (PostgreSQL as Django sets it up, SQLite)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _aware(value: datetime | str | None) -> datetime | None:
    """A datetime column read with a raw cursor: SQLite's come back naive (or as text)."""
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    return connection.ops.convert_datetimefield_value(value, None, connection)


def explicit_rules(monitor_ids: list[int]) -> dict[int, list[Rule]]:
    explicit: dict[int, list[Rule]] = defaultdict(list)
    if not monitor_ids:
        return explicit
    assertions = Assertion.objects.filter(monitor_id__in=monitor_ids).order_by(
        "monitor_id", "order", "id"
    )
    for row in assertions.values(
        "monitor_id", "id", "source", "selector", "operator", "warning_value", "critical_value",
        "aggregate", "window",
    ):  # fmt: skip
        explicit[row["monitor_id"]].append(
            Rule.from_dict(
                row | {"warning": row["warning_value"], "critical": row["critical_value"]}
            )
        )
    return explicit


def plan_for(monitor: Monitor, memory: dict[str, Any]) -> Plan:
    spec = ProbeSpec(
        monitor_id=monitor.pk,
        kind=monitor.kind,
        target=monitor.target,
        options=monitor.options or {},
        timeout=monitor.timeout,
        memory=memory,
    )
    return Plan(spec, rules_for(monitor, spec))


def run_now(monitor: Monitor, region: Region | None = None) -> tuple[Run, Verdict]:
    """Probe and judge a monitor right away, without storing anything (a dry run)."""
    region = region or Region.default()
    state = RegionState.objects.filter(monitor=monitor, region=region).first()
    plan = plan_for(monitor, state.memory if state else {})
    run = observe_now(plan.spec)
    return run, judge(plan, run, region)


# --- Manual runs (the admin's and the API's "Run now") ---------------------------

# A manual run answers inside the web request, and gunicorn stops a request
# after 30 s: a probe run from the admin or the API gets at most this long.
MANUAL_RUN_TIMEOUT = 25.0
MANUAL_RUN_LIMIT = 50


@dataclasses.dataclass
class ManualRun:
    """The outcome of probing and judging one monitor now; nothing is stored."""

    monitor: Monitor
    outcome: str
    reason: str
    latency_ms: float | None = None
    started_at: datetime | None = None


def evaluate_now(monitors: Sequence[Monitor]) -> list[ManualRun]:
    """Probe and judge monitors at once, concurrently, like services.run_now.

    Unlike run_now one by one, the probes run side by side and each is capped
    at MANUAL_RUN_TIMEOUT, so a selection answers within one request. A monitor
    that cannot be planned or judged gets an error outcome; the others run.
    """
    region = Region.default()
    memories = dict(
        RegionState.objects.filter(monitor__in=monitors, region=region).values_list(
            "monitor_id", "memory"
        )
    )
    results: dict[int, ManualRun] = {}
    plans: dict[int, Plan] = {}
    for monitor in monitors:
        try:
            plan = plan_for(monitor, memories.get(monitor.pk) or {})
        except DjangoValidationError as exc:  # e.g. a kind whose probe is not installed
            results[monitor.pk] = ManualRun(monitor, Outcome.ERROR, _one_line(exc))
            continue
        except Exception as exc:  # a broken monitor harms only itself
            logger.exception("planning a manual run failed", extra={"monitor_id": monitor.pk})
            results[monitor.pk] = ManualRun(
                monitor, Outcome.ERROR, f"could not plan the probe: {exc}"
            )
            continue
        spec = dataclasses.replace(plan.spec, timeout=min(plan.spec.timeout, MANUAL_RUN_TIMEOUT))
        plans[monitor.pk] = Plan(spec, plan.rules)
    if plans:
        by_id = {monitor.pk: monitor for monitor in monitors}
        runs = execute([Run(plan.spec, datetime.now(UTC)) for plan in plans.values()], len(plans))
        for run in runs:
            monitor_id = run.spec.monitor_id
            results[monitor_id] = _judged(by_id[monitor_id], plans[monitor_id], run, region)
    return [results[monitor.pk] for monitor in monitors]


def _judged(monitor: Monitor, plan: Plan, run: Run, region: Region) -> ManualRun:
    try:
        verdict = judge(plan, run, region)
        outcome, reason = verdict.outcome, verdict.reason
    except Exception as exc:  # a bad rule harms only its own monitor
        logger.exception("judging failed", extra={"monitor_id": monitor.pk})
        outcome, reason = Outcome.ERROR, f"could not evaluate thresholds: {exc}"
    latency = run.observation.latency_ms if run.observation else None
    return ManualRun(monitor, outcome, reason, latency, run.started_at)


def _one_line(exc: DjangoValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    return " ".join(exc.messages)


def rules_for(monitor: Monitor, spec: ProbeSpec) -> list[Rule]:
    implicit = get_probe(monitor.kind).implicit_rules(spec)
    explicit = [Rule.from_dict(a.as_rule()) for a in monitor.assertions.all()]
    return [*implicit, *explicit]


def judge(plan: Plan, run: Run, region: Region) -> Verdict:
    assert run.observation is not None
    now = run.started_at or datetime.now(UTC)
    windowed = [rule for rule in plan.rules if rule.windowed]
    history = WindowHistory(plan.spec.monitor_id, region.pk, windowed) if windowed else None
    verdict = evaluate(plan.rules, run.observation, now, history)
    said = run.observation.values.get("error_text")
    if verdict.outcome != Outcome.OK and said and said not in verdict.reason:
        verdict.reason = f"{verdict.reason} (error: {json.dumps(said)})"
    return verdict


class WindowHistory:
    """Earlier values of a monitor's windowed rules, read once per judgement."""

    def __init__(self, monitor_id: int, region_id: int, rules: list[Rule]) -> None:
        longest = max(rule.window or 0 for rule in rules)
        since = timezone.now() - timedelta(seconds=longest)
        self.rows = list(
            ProbeResult.objects.filter(
                monitor_id=monitor_id, region_id=region_id, scheduled_at__gte=since
            )
            .exclude(outcome=Outcome.ERROR)
            .values_list("scheduled_at", "duration_ms", "details")
        )

    def __call__(self, rule: Rule, window: timedelta) -> list[tuple[datetime, Any]]:
        if rule.source == "latency":
            return [(at, ms) for at, ms, _ in self.rows if ms is not None]
        return [
            (at, details["m"][rule.key])
            for at, _, details in self.rows
            if details and rule.key in details.get("m", {})
        ]


def record_batch(plans: dict[int, Plan], runs: list[Run], region: Region) -> list[StatusChange]:
    """Store the results of a finished batch and move monitor state; returns the flips."""
    if not runs:
        return []
    rows = []
    for run in runs:
        plan = plans[run.spec.monitor_id]
        try:
            verdict = judge(plan, run, region)
        except Exception as exc:  # a bad rule harms only its own monitor
            logger.exception("judging failed", extra={"monitor_id": run.spec.monitor_id})
            verdict = Verdict(Outcome.ERROR, f"could not evaluate thresholds: {exc}")
        rows.append((run, verdict))
        count_metrics(run, verdict)
    inserted = insert_results(rows, region)
    fresh = [(run, verdict, inserted[run.spec.monitor_id]) for run, verdict in rows
             if run.spec.monitor_id in inserted]  # fmt: skip
    if not fresh:
        return []
    return apply_results(fresh, region)


def count_metrics(run: Run, verdict: Verdict) -> None:
    kind = run.spec.kind
    metrics.inc(metrics.PROBES, {"kind": kind, "outcome": verdict.outcome})
    if run.observation and run.observation.latency_ms is not None:
        metrics.observe(metrics.PROBE_DURATION, run.observation.latency_ms / 1000, {"kind": kind})
    if run.started_at is not None:
        lag = (run.started_at - run.scheduled_at).total_seconds()
        metrics.observe(metrics.DISPATCH_LAG, max(lag, 0.0))


def insert_results(rows: list[tuple[Run, Verdict]], region: Region) -> dict[int, int]:
    """One multi-row insert; returns monitor id → result id for rows not stored before."""
    values = []
    for run, verdict in rows:
        observation = run.observation
        details: dict[str, Any] = {}
        if verdict.measured:
            details["m"] = verdict.measured
        if observation is not None and observation.info:
            details["info"] = observation.info
        values.append(
            (
                run.spec.monitor_id,
                run.scheduled_at,
                run.started_at or run.scheduled_at,
                observation.latency_ms if observation else None,
                verdict.outcome,
                verdict.reason[:2000],
                json.dumps(details) if details else None,
            )
        )
    with bound_cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array per column: the statement's text is the same for every
            # batch, so the driver does not re-parse a thousand placeholders.
            columns = [list(column) for column in zip(*values, strict=True)]
            columns[3] = floats(columns[3])  # duration_ms
            cursor.execute(insert_results_sql(), [region.pk, *columns])
        else:
            ops = connection.ops
            placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(values))
            params = [
                item
                for monitor_id, scheduled, started, *rest in values
                for item in (
                    monitor_id,
                    region.pk,
                    ops.adapt_datetimefield_value(scheduled),
                    ops.adapt_datetimefield_value(started),
                    *rest,
                )
            ]
            cursor.execute(
                f"INSERT INTO {ProbeResult._meta.db_table} ({', '.join(RESULT_COLUMNS)}) "  # noqa: S608
                f"VALUES {placeholders} ON CONFLICT (monitor_id, region_id, scheduled_at) "
                "DO NOTHING RETURNING id, monitor_id",
                params,
            )
        return {monitor_id: result_id for result_id, monitor_id in cursor.fetchall()}


RESULT_COLUMNS = (
    "monitor_id", "region_id", "scheduled_at", "started_at", "duration_ms", "outcome", "reason",
    "details",
)  # fmt: skip


@functools.cache
def insert_results_sql() -> str:
    """PostgreSQL: insert from one array per column (the region is one value for all)."""
    meta = ProbeResult._meta
    arrays = [name for name in RESULT_COLUMNS if name != "region_id"]
    # JSON goes as text, cast row by row: psycopg would want a wrapper object per value.
    types = [
        "text" if name == "details" else meta.get_field(name).db_type(connection) for name in arrays
    ]
    select = ", ".join(
        "%s" if name == "region_id" else f"v.{name}::jsonb" if name == "details" else f"v.{name}"
        for name in RESULT_COLUMNS
    )
    unnest = ", ".join(f"%b::{kind}[]" for kind in types)  # binary: see checks.bulk
    return (
        f"INSERT INTO {meta.db_table} ({', '.join(RESULT_COLUMNS)}) "  # noqa: S608
        f"SELECT {select} FROM unnest({unnest}) AS v({', '.join(arrays)}) "
        "ON CONFLICT (monitor_id, region_id, scheduled_at) DO NOTHING RETURNING id, monitor_id"
    )


@dataclass
class State:
    """A monitor's region state as locked for one batch: what its results read and move."""

    pk: int
    status: str
    ok_streak: int
    bad_streak: int
    critical_streak: int
    last_scheduled_at: datetime | None
    last_reason: str
    memory: dict[str, Any]


class Hysteresis(NamedTuple):
    """What the state machine reads of a monitor."""

    paused: bool
    failure_threshold: int
    recovery_threshold: int


def next_region_status(state: State, outcome: str, monitor: Hysteresis) -> str:
    if outcome == Outcome.OK:
        state.ok_streak, state.bad_streak, state.critical_streak = state.ok_streak + 1, 0, 0
    else:
        state.ok_streak = 0
        state.bad_streak += 1
        state.critical_streak = state.critical_streak + 1 if outcome != Outcome.WARNING else 0
    if state.critical_streak >= monitor.failure_threshold:
        return Status.DOWN
    if state.bad_streak >= monitor.failure_threshold:
        return Status.DEGRADED
    if outcome == Outcome.OK and (
        state.status == Status.PENDING or state.ok_streak >= monitor.recovery_threshold
    ):
        return Status.UP
    return state.status


def combined_status(monitor: Monitor, statuses: dict[int, str], region_ids: list[int]) -> str:
    seen = [statuses.get(region_id, Status.PENDING) for region_id in region_ids]
    needed = min(monitor.confirm_regions, len(seen))
    if sum(status == Status.DOWN for status in seen) >= needed:
        return Status.DOWN
    if any(status in (Status.DOWN, Status.DEGRADED) for status in seen):
        return Status.DEGRADED
    if any(status == Status.UP for status in seen):
        return Status.UP
    return Status.PENDING


def monitor_regions(monitor_ids: Sequence[int], default: Region) -> dict[int, list[int]]:
    configured: dict[int, list[int]] = defaultdict(list)
    # Pings arrive at the web, not from a region: heartbeats live in the default one.
    through = Monitor.regions.through.objects.filter(monitor_id__in=monitor_ids).exclude(
        monitor__kind=Monitor.Kind.HEARTBEAT
    )
    for monitor_id, region_id in through.values_list("monitor_id", "region_id"):
        configured[monitor_id].append(region_id)
    return {monitor_id: configured.get(monitor_id) or [default.pk] for monitor_id in monitor_ids}


STATE_FIELDS = [
    "status", "ok_streak", "bad_streak", "critical_streak", "last_scheduled_at", "last_reason",
    "memory",
]  # fmt: skip
LAST_RESULT_FIELDS = ["last_checked_at", "last_latency_ms", "last_reason"]


def lock_states(ids: list[int], region: Region) -> dict[int, tuple[State, Hysteresis]]:
    """Lock the monitors' states in this region, by monitor id; with what judges them.

    Plain rows in one query, not model instances: this runs for every batch
    of probes. Only the state rows are locked (monitors are locked later, and
    only when one flips).
    """

    def locked() -> dict[int, tuple[State, Hysteresis]]:
        where, params = in_ids("s.monitor_id", ids)
        lock = " FOR UPDATE OF s" if connection.features.has_select_for_update_of else ""
        columns = ", ".join(f"s.{name}" for name in STATE_FIELDS)
        sql = (
            f"SELECT s.monitor_id, s.id, {columns}, "  # noqa: S608
            "m.paused, m.failure_threshold, m.recovery_threshold "
            f"FROM {RegionState._meta.db_table} s JOIN {Monitor._meta.db_table} m "
            f"ON m.id = s.monitor_id WHERE s.region_id = %s AND {where} "
            f"ORDER BY s.monitor_id{lock}"
        )
        with bound_cursor() as cursor:
            cursor.execute(sql, [region.pk, *params])
            rows = cursor.fetchall()
        states = {}
        for monitor_id, pk, status, ok, bad, critical, last, reason, memory, *rules in rows:
            state = State(pk, status, ok, bad, critical, _aware(last), reason, _json(memory) or {})
            paused, failure, recovery = rules
            states[monitor_id] = (state, Hysteresis(bool(paused), failure, recovery))
        return states

    states = locked()
    missing = set(ids) - states.keys()
    if missing:
        RegionState.objects.bulk_create(
            [RegionState(monitor_id=i, region=region) for i in sorted(missing)],
            ignore_conflicts=True,
        )
        states = locked()
    return states


def apply_results(fresh: list[tuple[Run, Verdict, int]], region: Region) -> list[StatusChange]:
    ids = sorted(run.spec.monitor_id for run, _, _ in fresh)
    changes: list[StatusChange] = []
    last_results = []
    with transaction.atomic():
        # Region states are where results are serialised; lock order everywhere:
        # region states, then monitors, each by id.
        states = lock_states(ids, region)
        flipped: list[tuple[Run, Verdict, int]] = []
        moved: list[State] = []
        remembered = False
        for run, verdict, result_id in sorted(fresh, key=lambda item: item[0].spec.monitor_id):
            monitor_id = run.spec.monitor_id
            if monitor_id not in states:
                continue  # deleted while its batch ran
            state, monitor = states[monitor_id]
            if monitor.paused:
                continue
            if state.last_scheduled_at and run.scheduled_at <= state.last_scheduled_at:
                continue  # an older slot finished late: it does not rewrite the present
            new_status = next_region_status(state, verdict.outcome, monitor)
            if new_status != state.status:
                flipped.append((run, verdict, result_id))
            state.status, state.last_scheduled_at = new_status, run.scheduled_at
            state.last_reason = verdict.reason
            if run.observation and run.observation.memory is not None:
                state.memory, remembered = run.observation.memory, True
            moved.append(state)
            latency = run.observation.latency_ms if run.observation else None
            last_results.append(
                [monitor_id, run.started_at or run.scheduled_at, latency, verdict.reason]
            )
        # Most kinds remember nothing: then the memory column is left as it is.
        fields = STATE_FIELDS if remembered else [f for f in STATE_FIELDS if f != "memory"]
        update_rows(
            RegionState, fields, [[s.pk, *(getattr(s, name) for name in fields)] for s in moved]
        )
        if flipped:
            changes = flip_monitors(flipped)
    # The last result on the monitor row is a copy for display, written after
    # the state transaction: the monitor rows stay locked for one statement
    # only, so the dispatcher's SKIP LOCKED claim never passes over them.
    update_rows(Monitor, LAST_RESULT_FIELDS, last_results)
    return changes


def flip_monitors(flipped: list[tuple[Run, Verdict, int]]) -> list[StatusChange]:
    ids = sorted(run.spec.monitor_id for run, _, _ in flipped)
    monitors = Monitor.objects.select_for_update().filter(id__in=ids).order_by("id").in_bulk()
    regions_of = monitor_regions(ids, Region.default())
    statuses: dict[int, dict[int, str]] = defaultdict(dict)
    for monitor_id, region_id, status in RegionState.objects.filter(monitor_id__in=ids).values_list(
        "monitor_id", "region_id", "status"
    ):
        statuses[monitor_id][region_id] = status
    now = timezone.now()
    changes = []
    for run, verdict, result_id in flipped:
        monitor = monitors.get(run.spec.monitor_id)
        if monitor is None or monitor.paused:
            continue  # paused while its batch ran
        status = combined_status(monitor, statuses[monitor.pk], regions_of[monitor.pk])
        if status == monitor.status:
            continue
        changes.append(
            StatusChange(
                monitor=monitor,
                from_status=monitor.status,
                to_status=status,
                reason=verdict.reason,
                result_id=result_id,
                created_at=now,
            )
        )
        logger.info(
            "monitor %s is %s (was %s): %s", monitor.name, status, monitor.status, verdict.reason,
            extra={"monitor_id": monitor.pk},
        )  # fmt: skip
        monitor.status, monitor.status_since = status, now
    StatusChange.objects.bulk_create(changes)
    if changes:
        announce_status_changes()
    update_rows(
        Monitor,
        ["status", "status_since"],
        [[c.monitor_id, c.to_status, now] for c in changes],
    )
    return changes


def set_paused(monitor_ids: Sequence[int], paused: bool) -> int:
    """Pause or resume monitors; returns how many changed.

    A paused monitor is not probed and pages no one. Resuming starts it afresh
    (pending, streaks cleared) on its grid, so old streaks cannot flip it.
    """
    now = timezone.now()
    changed = 0
    with transaction.atomic():
        # Same lock order as apply_results: region states first, then monitors.
        states = RegionState.objects.select_for_update().filter(monitor_id__in=monitor_ids)
        list(states.order_by("monitor_id", "region_id").values_list("id", flat=True))
        monitors = list(
            Monitor.objects.select_for_update()
            .filter(id__in=monitor_ids, paused=not paused)
            .order_by("id")
        )
        for monitor in monitors:
            to_status = Status.PAUSED if paused else Status.PENDING
            StatusChange.objects.create(
                monitor=monitor,
                from_status=monitor.status,
                to_status=to_status,
                reason="paused" if paused else "resumed",
                created_at=now,
            )
            announce_status_changes()
            monitor.paused, monitor.status, monitor.status_since = paused, to_status, now
            monitor.next_check_at = None
            monitor.save(update_fields=["paused", "status", "status_since", "next_check_at"])
            changed += 1
        if not paused and monitors:
            RegionState.objects.filter(monitor__in=monitors).update(
                status=Status.PENDING, ok_streak=0, bad_streak=0, critical_streak=0
            )
    return changed
