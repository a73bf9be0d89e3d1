"""What a status page shows, derived from monitors, rollups, incidents and maintenance.

`page_snapshot(page)` is the one function the HTML page, the JSON API, the
badges and the feeds read: a plain, JSON-ready dict holding only what an admin
chose to make public (component names and descriptions, public incidents and
their updates, public maintenance) — never monitor names, targets or reasons.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from checks.models import Monitor, Rollup
from incidents.maintenance import window_at
from incidents.models import Component, ComponentStatus, Maintenance, PublicIncident, StatusPage

Status = ComponentStatus
# Worst first: a component or a page shows the worst of what feeds it.
SEVERITY = [
    Status.MAJOR_OUTAGE,
    Status.PARTIAL_OUTAGE,
    Status.DEGRADED_PERFORMANCE,
    Status.UNDER_MAINTENANCE,
    Status.OPERATIONAL,
]
RANK = {status: n for n, status in enumerate(SEVERITY)}
# Statuspage's page indicator and description for the worst component status.
INDICATOR = {
    Status.OPERATIONAL: ("none", "All Systems Operational"),
    Status.UNDER_MAINTENANCE: ("maintenance", "Service Under Maintenance"),
    Status.DEGRADED_PERFORMANCE: ("minor", "Degraded System Performance"),
    Status.PARTIAL_OUTAGE: ("major", "Partial System Outage"),
    Status.MAJOR_OUTAGE: ("critical", "Major System Outage"),
}
IMPACT_INDICATOR = {"none": 0, "minor": 1, "major": 2, "critical": 3}
INDICATOR_RANK = {"none": 0, "maintenance": 0, "minor": 1, "major": 2, "critical": 3}
UPTIME_WINDOWS = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
RECENT_RESOLVED = timedelta(days=7)  # resolved incidents stay on the front page this long


def monitor_status(statuses: list[str]) -> str:
    """A component's status from its monitors' statuses (paused and pending say nothing)."""
    known = [
        s
        for s in statuses
        if s in (Monitor.Status.UP, Monitor.Status.DEGRADED, Monitor.Status.DOWN)
    ]
    if not known:
        return Status.OPERATIONAL
    down = sum(1 for s in known if s == Monitor.Status.DOWN)
    if down == len(known):
        return Status.MAJOR_OUTAGE
    if down:
        return Status.PARTIAL_OUTAGE
    if Monitor.Status.DEGRADED in known:
        return Status.DEGRADED_PERFORMANCE
    return Status.OPERATIONAL


def worst(statuses: Iterable[str]) -> str:
    return min(statuses, key=lambda s: RANK[s], default=Status.OPERATIONAL)


def component_statuses(components: list[Component], now: datetime) -> dict[int, str]:
    """Each component's status: the override, else maintenance, else its monitors."""
    ids = [c.pk for c in components]
    statuses: dict[int, list[str]] = defaultdict(list)
    monitors: dict[int, set[int]] = defaultdict(set)
    rows = Component.monitors.through.objects.filter(component_id__in=ids).values_list(
        "component_id", "monitor_id", "monitor__status"
    )
    for component_id, monitor_id, status in rows:
        statuses[component_id].append(status)
        monitors[component_id].add(monitor_id)
    in_maintenance = components_in_maintenance(components, monitors, now)
    result = {}
    for component in components:
        if component.status_override:
            result[component.pk] = component.status_override
        elif component.pk in in_maintenance:
            result[component.pk] = Status.UNDER_MAINTENANCE
        else:
            result[component.pk] = monitor_status(statuses[component.pk])
    return result


def active_maintenances(now: datetime) -> list[Maintenance]:
    candidates = Maintenance.objects.filter(starts_at__lte=now).filter(
        Q(ends_at__isnull=True) | Q(ends_at__gt=now)
    )
    return [
        m
        for m in candidates.prefetch_related("components", "monitors", "tags__monitors")
        if window_at(m, now)
    ]


def components_in_maintenance(
    components: list[Component], monitors: dict[int, set[int]], now: datetime
) -> set[int]:
    """Components named by an active window, or all of whose monitors are in one."""
    covered_components: set[int] = set()
    covered_monitors: set[int] = set()
    for maintenance in active_maintenances(now):
        covered_components.update(c.pk for c in maintenance.components.all())
        covered_monitors.update(m.pk for m in maintenance.monitors.all())
        for tag in maintenance.tags.all():
            covered_monitors.update(m.pk for m in tag.monitors.all())
    return {
        c.pk
        for c in components
        if c.pk in covered_components or (monitors[c.pk] and monitors[c.pk] <= covered_monitors)
    }


def overall(statuses: Iterable[str], incidents: list[dict[str, Any]]) -> dict[str, str]:
    """The page's indicator and sentence: the worst component, raised by open incidents' impact."""
    indicator, description = INDICATOR[worst(statuses)]
    for incident in incidents:
        if incident["status"] == PublicIncident.Status.RESOLVED:
            continue
        impact = incident["impact"]
        if IMPACT_INDICATOR.get(impact, 0) > INDICATOR_RANK[indicator]:
            indicator = impact
            description = {
                "minor": "Minor Service Outage",
                "major": "Partial System Outage",
                "critical": "Major System Outage",
            }[impact]
    return {"indicator": indicator, "description": description}


# --- Uptime ------------------------------------------------------------------------


def uptime(ok: int, total: int) -> float | None:
    return None if not total else round(100.0 * ok / total, 3)


def daily_uptime(
    monitor_ids: list[int], tz: zoneinfo.ZoneInfo, since: datetime
) -> dict[tuple[int, date], tuple[int, int]]:
    """(monitor, local day) → (good results, all results).

    From daily rollups when the page keeps TIME_ZONE's days (one row per day
    instead of 24); otherwise from hourly rollups folded into the page's days.
    """
    good = Sum(F("ok") + F("warning"))
    if getattr(tz, "key", None) == settings.TIME_ZONE:
        days = Rollup.objects.filter(
            monitor_id__in=monitor_ids, period=Rollup.Period.DAY, bucket_start__gte=since
        ).values_list("monitor_id", "bucket_start", "ok", "warning", "total")
        return {
            (monitor_id, start.astimezone(tz).date()): (ok + warning, total)
            for monitor_id, start, ok, warning, total in days
        }
    rows = (
        Rollup.objects.filter(
            monitor_id__in=monitor_ids, period=Rollup.Period.HOUR, bucket_start__gte=since
        )
        .annotate(day=TruncDate("bucket_start", tzinfo=tz))
        .values("monitor_id", "day")
        .annotate(good=good, total=Sum("total"))
    )
    return {(row["monitor_id"], row["day"]): (row["good"] or 0, row["total"] or 0) for row in rows}


def component_days(
    component_monitors: set[int],
    per_day: dict[tuple[int, date], tuple[int, int]],
    days: list[date],
    incidents_by_day: dict[date, list[str]],
) -> list[dict[str, Any]]:
    bars = []
    for day in days:
        good = total = 0
        for monitor_id in component_monitors:
            g, t = per_day.get((monitor_id, day), (0, 0))
            good, total = good + g, total + t
        bars.append(
            {
                "date": day.isoformat(),
                "uptime": uptime(good, total),
                "incidents": incidents_by_day.get(day, []),
            }
        )
    return bars


# Short windows from hourly rollups; long ones from daily rollups (a day at
# the far edge counts whole or not at all, which moves a 30-day figure little).
HOURLY_WINDOWS = ("24h", "7d")


def window_totals(monitor_ids: list[int], now: datetime) -> dict[int, dict[str, tuple[int, int]]]:
    """monitor → window name → (good results, all results), two queries for every monitor."""
    totals: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
    for period, names in (
        (Rollup.Period.HOUR, HOURLY_WINDOWS),
        (Rollup.Period.DAY, tuple(n for n in UPTIME_WINDOWS if n not in HOURLY_WINDOWS)),
    ):
        aggregates = {}
        for name in names:
            recent = Q(bucket_start__gte=now - UPTIME_WINDOWS[name])
            aggregates[f"good_{name}"] = Sum(F("ok") + F("warning"), filter=recent)
            aggregates[f"total_{name}"] = Sum("total", filter=recent)
        rows = (
            Rollup.objects.filter(
                monitor_id__in=monitor_ids,
                period=period,
                bucket_start__gte=now - max(UPTIME_WINDOWS[n] for n in names),
            )
            .values("monitor_id")
            .annotate(**aggregates)
        )
        for row in rows:
            for name in names:
                totals[row["monitor_id"]][name] = (
                    row[f"good_{name}"] or 0,
                    row[f"total_{name}"] or 0,
                )
    return totals


def window_uptimes(
    component_monitors: set[int], totals: dict[int, dict[str, tuple[int, int]]]
) -> dict[str, float | None]:
    result = {}
    for name in UPTIME_WINDOWS:
        pairs = [totals[m][name] for m in component_monitors if name in totals.get(m, {})]
        result[name] = uptime(sum(g for g, _ in pairs), sum(t for _, t in pairs))
    return result


def hourly_latencies(monitor_ids: list[int], now: datetime) -> dict[int, dict[datetime, float]]:
    """monitor → hour → median latency over the last 24 hours, in one query."""
    rows = Rollup.objects.filter(
        monitor_id__in=monitor_ids,
        period=Rollup.Period.HOUR,
        bucket_start__gte=now - timedelta(hours=24),
        latency_p50__isnull=False,
    ).values_list("monitor_id", "bucket_start", "latency_p50")
    found: dict[int, dict[datetime, float]] = defaultdict(dict)
    for monitor_id, hour, p50 in rows:
        found[monitor_id][hour] = p50
    return found


def response_times(
    component_monitors: set[int], latencies: dict[int, dict[datetime, float]]
) -> list[dict[str, Any]]:
    """Hourly median latency over the last 24 hours (the mean of its monitors' medians)."""
    per_hour: dict[datetime, list[float]] = defaultdict(list)
    for monitor_id in component_monitors:
        for hour, p50 in latencies.get(monitor_id, {}).items():
            per_hour[hour].append(p50)
    return [
        {"hour": hour.isoformat(), "ms": round(sum(values) / len(values), 1)}
        for hour, values in sorted(per_hour.items())
    ]


# --- Incidents and maintenance ---------------------------------------------------


def incident_dict(incident: PublicIncident) -> dict[str, Any]:
    return {
        "id": incident.pk,
        "title": incident.title,
        "impact": incident.impact,
        "status": incident.status,
        "created_at": incident.created_at.isoformat(),
        "updated_at": incident.updated_at.isoformat(),
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "published_at": incident.published_at.isoformat() if incident.published_at else None,
        "components": [c.pk for c in incident.components.all()],
        "updates": [
            {"id": u.pk, "status": u.status, "body": u.body, "created_at": u.created_at.isoformat()}
            for u in incident.updates.all()
        ],
    }


def public_incidents(page: StatusPage, since: datetime) -> list[PublicIncident]:
    return list(
        page.incidents.filter(published_at__isnull=False)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=since))
        .prefetch_related("components", "updates")
        .order_by("-created_at")
    )


def incidents_by_component_day(
    page: StatusPage, tz: zoneinfo.ZoneInfo, since: datetime, now: datetime
) -> dict[int, dict[date, list[str]]]:
    """Titles of published incidents touching each component on each local day."""
    found: dict[int, dict[date, list[str]]] = defaultdict(lambda: defaultdict(list))
    rows = (
        page.incidents.filter(published_at__isnull=False, created_at__lte=now)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=since))
        .prefetch_related("components")
    )
    for incident in rows:
        first = incident.created_at.astimezone(tz).date()
        last = (incident.resolved_at or now).astimezone(tz).date()
        for component in incident.components.all():
            day = first
            while day <= last:
                found[component.pk][day].append(incident.title)
                day += timedelta(days=1)
    return found


def maintenance_dict(
    maintenance: Maintenance, start: datetime, end: datetime, state: str
) -> dict[str, Any]:
    return {
        "id": maintenance.pk,
        "title": maintenance.title,
        "description": maintenance.public_description,
        "status": state,  # scheduled / in_progress / completed
        "scheduled_for": start.isoformat(),
        "scheduled_until": end.isoformat(),
        "components": [c.pk for c in maintenance.components.all()],
    }


def public_maintenances(page: StatusPage, now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Announced maintenance: upcoming (next 30 days), in progress, completed (last 7 days)."""
    result: dict[str, list[dict[str, Any]]] = {"upcoming": [], "in_progress": [], "completed": []}
    windows = (
        Maintenance.objects.filter(public=True, components__page=page)
        .distinct()
        .prefetch_related("components")
    )
    for maintenance in windows:
        for start, end in occurrences(
            maintenance, now - timedelta(days=7), now + timedelta(days=30)
        ):
            if start <= now < end:
                result["in_progress"].append(
                    maintenance_dict(maintenance, start, end, "in_progress")
                )
            elif now < start:
                result["upcoming"].append(maintenance_dict(maintenance, start, end, "scheduled"))
            else:
                result["completed"].append(maintenance_dict(maintenance, start, end, "completed"))
    for key, items in result.items():
        items.sort(key=lambda item: item["scheduled_for"], reverse=key == "completed")
    result["upcoming"] = result["upcoming"][:10]
    result["completed"] = result["completed"][:10]
    return result


def occurrences(
    maintenance: Maintenance, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The maintenance's windows overlapping [start, end) (recurring rules: probed hourly)."""
    if maintenance.recurrence == Maintenance.Recurrence.ONCE:
        if maintenance.ends_at and maintenance.ends_at > start and maintenance.starts_at < end:
            return [(maintenance.starts_at, maintenance.ends_at)]
        return []
    found: dict[datetime, datetime] = {}
    moment = max(start, maintenance.starts_at)
    stop = min(end, maintenance.ends_at) if maintenance.ends_at else end
    step = timedelta(minutes=min(60, maintenance.duration_minutes or 60))
    while moment < stop:
        window = window_at(maintenance, moment)
        if window is not None:
            found.setdefault(window.starts_at, window.ends_at)
        moment += step
    return sorted(found.items())


# --- The snapshot --------------------------------------------------------------------


def page_snapshot(page: StatusPage, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    tz = zoneinfo.ZoneInfo(page.timezone)
    components = list(page.components.select_related("group").order_by("position", "id"))
    statuses = component_statuses(components, now)
    monitors: dict[int, set[int]] = defaultdict(set)
    for component_id, monitor_id in Component.monitors.through.objects.filter(
        component_id__in=[c.pk for c in components]
    ).values_list("component_id", "monitor_id"):
        monitors[component_id].add(monitor_id)
    history = min(page.history_days, 90)
    today = now.astimezone(tz).date()
    days = [today - timedelta(days=n) for n in range(history - 1, -1, -1)]
    since = datetime.combine(days[0], datetime.min.time(), tzinfo=tz)
    monitor_ids = sorted({m for ids in monitors.values() for m in ids})
    per_day = daily_uptime(monitor_ids, tz, since)
    totals = window_totals(monitor_ids, now)
    shown_latency = [m for c in components if c.show_response_time for m in monitors[c.pk]]
    latencies = hourly_latencies(shown_latency, now) if shown_latency else {}
    incident_days = incidents_by_component_day(page, tz, since, now)
    incidents = [incident_dict(i) for i in public_incidents(page, now - RECENT_RESOLVED)]
    groups = {g.pk: {"id": g.pk, "name": g.name, "position": g.position} for g in page.groups.all()}
    return {
        "page": {
            "id": page.pk,
            "title": page.title,
            "description": page.description,
            "host": page.host,
            "logo_url": page.logo_url,
            "support_url": page.support_url,
            "timezone": page.timezone,
            "updated_at": now.isoformat(),
        },
        "status": overall(statuses.values(), incidents),
        "groups": sorted(groups.values(), key=lambda g: (g["position"], g["id"])),
        "components": [
            {
                "id": c.pk,
                "name": c.name,
                "description": c.description,
                "group_id": c.group_id,
                "position": c.position,
                "status": statuses[c.pk],
                "show_uptime": c.show_uptime,
                "uptime": window_uptimes(monitors[c.pk], totals) if c.show_uptime else {},
                "days": component_days(monitors[c.pk], per_day, days, incident_days.get(c.pk, {}))
                if c.show_uptime
                else [],
                "response_times": response_times(monitors[c.pk], latencies)
                if c.show_response_time
                else [],
            }
            for c in components
        ],
        "incidents": incidents,
        "maintenances": public_maintenances(page, now),
    }
