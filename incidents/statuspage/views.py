"""The public status page: the front page, one incident, and the incident history.

Server-rendered HTML without any script, from the page snapshot
(incidents.statuspage.derive), cached until something it shows changes
(incidents.statuspage.cache). The functions below turn the snapshot's plain
data into what the templates print: local times in the page's timezone,
labels, uptime bars and the response-time chart. Everything a visitor reads
passes through the templates' autoescaping; nothing here is marked safe.
"""

from __future__ import annotations

import math
import zoneinfo
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from incidents.models import ComponentStatus, Maintenance, PublicIncident, StatusPage
from incidents.statuspage.cache import cached_response
from incidents.statuspage.derive import incident_dict, maintenance_dict, worst
from incidents.statuspage.pages import page_for, snapshot_for

CACHE_CONTROL = "public, max-age=10"
HISTORY_MONTHS = 3  # months per history page, newest first
HISTORY_PAGES = 40  # ten years back; the page number is part of a cache key
STATUS_LABELS = dict(ComponentStatus.choices)
INCIDENT_STATUS_LABELS = dict(PublicIncident.Status.choices)
IMPACT_LABELS = {
    "none": "No impact",
    "minor": "Minor impact",
    "major": "Major impact",
    "critical": "Critical impact",
}
MAINTENANCE_LABELS = {
    "scheduled": "Scheduled",
    "in_progress": "In progress",
    "completed": "Completed",
}
# Optional links to the feeds and subscriptions (incidents.statuspage.feeds_urls).
OPTIONAL_LINKS = {
    "atom": "status-feed-atom",
    "rss": "status-feed-rss",
    "summary": "status-api-summary",
    "subscribe": "status-subscribe",
}


# --- Views ---------------------------------------------------------------------------


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    page_id = site_id(request)

    def build() -> HttpResponse:
        page = page_for(request)
        snapshot = snapshot_for(request, page)
        return page_response(request, "incidents/status/home.html", home_context(snapshot))

    return cached_response(request, page_id, "home", build)


@require_safe
def incident(request: HttpRequest, pk: int) -> HttpResponse:
    page_id = site_id(request)

    def build() -> HttpResponse:
        page = page_for(request)
        found = published(page).filter(pk=pk).first()
        if found is None:
            return not_found(request, page)
        names = {c.pk: c.name for c in found.components.all()}
        context = {
            "site": site_context(page),
            "incident": present_incident(incident_dict(found), zone(page), names),
        }
        return page_response(request, "incidents/status/incident.html", context)

    return cached_response(request, page_id, f"incident:{pk}", build)


@require_safe
def history(request: HttpRequest) -> HttpResponse:
    page_id = site_id(request)
    number = history_page_number(request)

    def build() -> HttpResponse:
        page = page_for(request)
        return page_response(
            request, "incidents/status/history.html", history_context(page, number)
        )

    return cached_response(request, page_id, f"history:{number}", build)


def site_id(request: HttpRequest) -> int:
    """The page's id without a query: the middleware knows it (else look the host up)."""
    site = getattr(request, "status_page", None)
    return site.id if site is not None else page_for(request).pk


def page_response(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    # Rendered without the request: the bytes are shared by every visitor, so no
    # context processor (user, messages, CSRF token) may put anything personal in them.
    response = HttpResponse(render_to_string(template, context), status=status)
    response["Cache-Control"] = CACHE_CONTROL
    return response


def not_found(request: HttpRequest, page: StatusPage) -> HttpResponse:
    context = {"site": site_context(page)}
    return page_response(request, "incidents/status/not_found.html", context, status=404)


def history_page_number(request: HttpRequest) -> int:
    raw = request.GET.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= HISTORY_PAGES:
        raise Http404("no such history page")
    return int(raw)


# --- The front page ----------------------------------------------------------------------


def home_context(snapshot: dict[str, Any]) -> dict[str, Any]:
    info = snapshot["page"]
    tz = zoneinfo.ZoneInfo(info["timezone"])
    now = datetime.fromisoformat(info["updated_at"])
    names = {c["id"]: c["name"] for c in snapshot["components"]}
    incidents = [present_incident(i, tz, names) for i in snapshot["incidents"]]
    windows = snapshot["maintenances"]
    return {
        "site": site_info(info),
        "status": snapshot["status"],
        "updated": when(now, tz),
        "active": [i for i in incidents if i["status"] != PublicIncident.Status.RESOLVED],
        "recent": [i for i in incidents if i["status"] == PublicIncident.Status.RESOLVED],
        "in_progress": [present_maintenance(m, tz, names) for m in windows["in_progress"]],
        "upcoming": [present_maintenance(m, tz, names) for m in windows["upcoming"]],
        "items": layout(snapshot, now),
        "history_days": max((len(c["days"]) for c in snapshot["components"]), default=0),
    }


def layout(snapshot: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """Groups and ungrouped components, in the admin's order; each group with its members."""
    groups = {g["id"]: {**g, "kind": "group", "components": []} for g in snapshot["groups"]}
    items: list[dict[str, Any]] = []
    for item in snapshot["components"]:
        component = present_component(item, now)
        group = groups.get(item["group_id"])
        if group is None:
            items.append({"kind": "component", "position": item["position"], **component})
        else:
            group["components"].append(component)
    for group in groups.values():
        if group["components"]:  # an empty group says nothing to a visitor
            group["status"] = worst(c["status"] for c in group["components"])
            group["status_label"] = STATUS_LABELS[group["status"]]
            items.append(group)
    items.sort(key=lambda item: item["position"])  # stable: the snapshot's order on ties
    return items


def present_component(item: dict[str, Any], now: datetime) -> dict[str, Any]:
    uptime = item["uptime"]
    return {
        "id": item["id"],
        "name": item["name"],
        "description": item["description"],
        "status": item["status"],
        "status_label": STATUS_LABELS[item["status"]],
        "show_uptime": item["show_uptime"],
        "bars": [bar(day) for day in item["days"]],
        "uptime": percent(uptime.get("90d")) if uptime else "",
        "windows": [
            (label, percent(uptime.get(key)))
            for key, label in (("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days"))
        ]
        if uptime
        else [],
        "chart": chart(item["response_times"], now),
    }


def percent(value: float | None) -> str:
    """99.987 → "99.98%": rounded down, so a bad minute never reads as 100%."""
    if value is None:
        return "no data"
    if value >= 100:
        return "100%"
    return f"{math.floor(value * 100) / 100:.2f}%"


def bar_level(uptime: float | None, incidents: list[str]) -> str:
    if uptime is None:
        return "minor" if incidents else "none"
    if uptime < 95:
        return "critical"
    if uptime < 99:
        return "major"
    if uptime < 99.9 or incidents:
        return "minor"
    return "ok"


def bar(day: dict[str, Any]) -> dict[str, str]:
    """One day of the uptime bar: its colour, and what hovering, focus or a tap shows."""
    on = date.fromisoformat(day["date"])
    titles = list(dict.fromkeys(day["incidents"]))
    uptime = "no data" if day["uptime"] is None else f"{percent(day['uptime'])} uptime"
    said = f"incidents: {'; '.join(titles)}" if titles else "no incidents"
    return {
        "level": bar_level(day["uptime"], titles),
        "label": f"{on:%a} {on.day} {on:%b %Y}: {uptime}, {said}",
    }


CHART_WIDTH, CHART_HEIGHT = 300, 48


def chart(points: list[dict[str, Any]], now: datetime) -> dict[str, Any] | None:
    """The last 24 hours' median response times as an inline SVG polyline (no script)."""
    if len(points) < 2:
        return None
    start = now - timedelta(hours=24)
    values = [p["ms"] for p in points]
    top = max(values) * 1.1 or 1.0
    coords = []
    for point in points:
        at = (datetime.fromisoformat(point["hour"]) - start).total_seconds() / 86400
        x = min(max(at, 0.0), 1.0) * CHART_WIDTH
        y = CHART_HEIGHT - point["ms"] / top * (CHART_HEIGHT - 2) - 1
        coords.append(f"{x:.1f},{y:.1f}")
    line = " ".join(coords)
    first_x, last_x = coords[0].split(",")[0], coords[-1].split(",")[0]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "line": line,
        "area": f"{first_x},{CHART_HEIGHT} {line} {last_x},{CHART_HEIGHT}",
        "latest": round(values[-1]),
        "low": round(min(values)),
        "high": round(max(values)),
    }


# --- Incidents and maintenance -------------------------------------------------------------


def zone(page: StatusPage) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(page.timezone)


def when(moment: datetime, tz: zoneinfo.ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{local:%b} {local.day}, {local:%Y}, {local:%H:%M} {local.tzname()}"


def stamp(iso: str | None, tz: zoneinfo.ZoneInfo) -> dict[str, str] | None:
    """A time as <time datetime=…> shows it: machine-readable, and in the page's timezone."""
    if not iso:
        return None
    moment = datetime.fromisoformat(iso)
    return {"iso": moment.isoformat(), "text": when(moment, tz)}


def present_incident(
    item: dict[str, Any], tz: zoneinfo.ZoneInfo, names: dict[int, str]
) -> dict[str, Any]:
    return {
        "id": item["id"],
        "url": reverse("status-incident", args=[item["id"]]),
        "title": item["title"],
        "impact": item["impact"],
        "impact_label": IMPACT_LABELS.get(item["impact"], item["impact"]),
        "status": item["status"],
        "status_label": INCIDENT_STATUS_LABELS.get(item["status"], item["status"]),
        "components": [names[pk] for pk in item["components"] if pk in names],
        "started": stamp(item["created_at"], tz),
        "resolved": stamp(item["resolved_at"], tz),
        "updates": [
            {
                "status": u["status"],
                "status_label": INCIDENT_STATUS_LABELS.get(u["status"], u["status"]),
                "body": u["body"],
                "at": stamp(u["created_at"], tz),
            }
            for u in item["updates"]  # newest first
        ],
    }


def present_maintenance(
    item: dict[str, Any], tz: zoneinfo.ZoneInfo, names: dict[int, str]
) -> dict[str, Any]:
    start = datetime.fromisoformat(item["scheduled_for"]).astimezone(tz)
    end = datetime.fromisoformat(item["scheduled_until"]).astimezone(tz)
    until = f"{end:%H:%M}" if end.date() == start.date() else when(end, tz)
    return {
        "title": item["title"],
        "description": item["description"],
        "status": item["status"],
        "status_label": MAINTENANCE_LABELS.get(item["status"], item["status"]),
        "components": [names[pk] for pk in item["components"] if pk in names],
        "start": {"iso": start.isoformat(), "text": when(start, tz)},
        "end": {"iso": end.isoformat(), "text": until},
    }


def published(page: StatusPage) -> QuerySet[PublicIncident]:
    return page.incidents.filter(published_at__isnull=False).prefetch_related(
        "components", "updates"
    )


# --- History -------------------------------------------------------------------------------


def month_start(day: date, back: int = 0) -> date:
    months = day.year * 12 + day.month - 1 - back
    return date(months // 12, months % 12 + 1, 1)


def history_context(page: StatusPage, number: int) -> dict[str, Any]:
    """HISTORY_MONTHS months of published incidents and past maintenance, newest first."""
    tz = zone(page)
    now = timezone.now()
    newest = month_start(now.astimezone(tz).date(), (number - 1) * HISTORY_MONTHS)
    months = [month_start(newest, n) for n in range(HISTORY_MONTHS)]
    since = datetime.combine(months[-1], datetime.min.time(), tzinfo=tz)
    until = datetime.combine(month_start(newest, -1), datetime.min.time(), tzinfo=tz)
    by_month: dict[date, list[tuple[datetime, dict[str, Any]]]] = {month: [] for month in months}
    found = published(page).filter(created_at__gte=since, created_at__lt=until)
    for item in found:
        names = {c.pk: c.name for c in item.components.all()}
        by_month[month_start(item.created_at.astimezone(tz).date())].append(
            (
                item.created_at,
                {"kind": "incident", **present_incident(incident_dict(item), tz, names)},
            )
        )
    for window in past_maintenance(page, now).filter(starts_at__gte=since, starts_at__lt=until):
        by_month[month_start(window.starts_at.astimezone(tz).date())].append(
            (window.starts_at, present_past_maintenance(window, page, tz))
        )
    older = number < HISTORY_PAGES and (
        published(page).filter(created_at__lt=since).exists()
        or past_maintenance(page, now).filter(starts_at__lt=since).exists()
    )
    return {
        "site": site_context(page),
        "months": [
            {
                "name": f"{month:%B %Y}",
                "items": [
                    item for _, item in sorted(by_month[month], key=lambda i: i[0], reverse=True)
                ],
            }
            for month in months
        ],
        "newer": f"?page={number - 1}" if number > 1 else "",
        "older": f"?page={number + 1}" if older else "",
    }


def past_maintenance(page: StatusPage, now: datetime) -> QuerySet[Maintenance]:
    """The page's announced one-off windows that have ended.

    Recurring windows (weekly, cron) are left out: their occurrences are the
    routine slot a visitor already sees announced on the front page, a nightly
    rule would bury the incidents under identical entries, and listing a cron
    rule's past runs over months has no useful bound.
    """
    return (
        Maintenance.objects.filter(
            public=True,
            components__page=page,
            recurrence=Maintenance.Recurrence.ONCE,
            ends_at__lte=now,
        )
        .distinct()
        .prefetch_related("components")
    )


def present_past_maintenance(
    window: Maintenance, page: StatusPage, tz: zoneinfo.ZoneInfo
) -> dict[str, Any]:
    end = window.ends_at or window.starts_at  # never None: past_maintenance asks for an end
    # Only this page's components: a window may cover other pages' too.
    names = {c.pk: c.name for c in window.components.all() if c.page_id == page.pk}
    item = maintenance_dict(window, window.starts_at, end, "completed")
    return {"kind": "maintenance", **present_maintenance(item, tz, names)}


# --- The frame every page shares -----------------------------------------------------------


def site_context(page: StatusPage) -> dict[str, Any]:
    return site_info(
        {
            "title": page.title,
            "description": page.description,
            "logo_url": page.logo_url,
            "support_url": page.support_url,
            "timezone": page.timezone,
        }
    )


def site_info(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": info["title"],
        "description": info["description"],
        "logo_url": web_url(info["logo_url"]),
        "support_url": web_url(info["support_url"]),
        "timezone": info["timezone"],
        "home_url": reverse("status-home"),
        "history_url": reverse("status-history"),
        "links": optional_links(),
    }


def web_url(url: str) -> str:
    """The URL if it is http(s): the admin validates it, but a javascript: link never renders."""
    return url if url.lower().startswith(("https://", "http://")) else ""


def optional_links() -> dict[str, str]:
    """The feed, API and subscribe URLs that exist (they live in another module)."""
    found = {}
    for key, name in OPTIONAL_LINKS.items():
        try:
            found[key] = reverse(name)
        except NoReverseMatch:
            continue
    return found
