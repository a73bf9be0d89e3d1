"""The public JSON API, shaped like Atlassian Statuspage's v2 API so existing widgets read it.

/api/v2/status.json holds the page and its overall status; /api/v2/summary.json
adds components (groups as components with "group": true, as Statuspage does),
unresolved incidents with their updates, and upcoming and in-progress
maintenance. Everything comes from the page snapshot (derive.page_snapshot),
so only what an admin made public is here. Ids are strings, as Statuspage's are.

Any origin may read these (CORS "*", no credentials), with GET only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from django.db.models import Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from incidents.models import PublicIncident, StatusPage
from incidents.statuspage.cache import cached_response
from incidents.statuspage.derive import worst
from incidents.statuspage.pages import incident_url, page_for, page_url, snapshot_for
from incidents.statuspage.views import site_id

CACHE_CONTROL = "public, max-age=30"
ALLOWED_METHODS = "GET, HEAD, OPTIONS"
CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT_MAX_AGE = "86400"
HEADER_LIST = re.compile(r"^[A-Za-z0-9-]+(\s*,\s*[A-Za-z0-9-]+)*$")

View = Callable[[HttpRequest], HttpResponse]


def cors(view: View) -> View:
    """Answer preflights, refuse all but GET/HEAD, and let any origin read the answer."""

    @wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS":
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            asked = request.headers.get("Access-Control-Request-Headers", "")
            if asked and HEADER_LIST.match(asked):
                response["Access-Control-Allow-Headers"] = asked
            response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        elif request.method in ("GET", "HEAD"):
            response = view(request)
        else:
            response = JsonResponse(
                {"error": f"method {request.method} is not allowed; use GET"}, status=405
            )
        if request.method not in ("GET", "HEAD"):
            response["Allow"] = ALLOWED_METHODS
        for name, value in CORS_HEADERS.items():
            response[name] = value
        return response

    # A read-only API: nothing here acts on a POST, so there is nothing to forge.
    return csrf_exempt(wrapped)


def json_response(data: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(data)
    response["Cache-Control"] = CACHE_CONTROL
    return response


@cors
def status(request: HttpRequest) -> HttpResponse:
    def render() -> HttpResponse:
        page = page_for(request)
        snapshot = snapshot_for(request, page)
        return json_response({"page": page_dict(page, snapshot), "status": snapshot["status"]})

    # The page is looked up only on a miss: a hit makes no query.
    return cached_response(request, site_id(request), "api:status", render)


@cors
def summary(request: HttpRequest) -> HttpResponse:
    def render() -> HttpResponse:
        page = page_for(request)
        return json_response(summary_of(page, snapshot_for(request, page)))

    return cached_response(request, site_id(request), "api:summary", render)


# --- The documents ------------------------------------------------------------------------


def summary_of(page: StatusPage, snapshot: dict[str, Any]) -> dict[str, Any]:
    components = components_of(page, snapshot)
    by_id = {c["id"]: c for c in components if not c["group"]}
    incidents = [
        incident_of(page, item, by_id)
        for item in snapshot["incidents"]
        if item["status"] != PublicIncident.Status.RESOLVED
    ]
    windows = snapshot["maintenances"]
    return {
        "page": page_dict(page, snapshot),
        "status": snapshot["status"],
        "components": components,
        "incidents": incidents,
        "scheduled_maintenances": [
            maintenance_of(page, item, by_id)
            for item in windows["in_progress"] + windows["upcoming"]
        ],
    }


def page_dict(page: StatusPage, snapshot: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(page.pk),
        "name": page.title,
        "url": page_url(page).rstrip("/"),
        "time_zone": page.timezone,
        "updated_at": snapshot["page"]["updated_at"],
    }


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def group_id(pk: int | None) -> str | None:
    # Statuspage's groups and components share one id space; ours do not.
    return None if pk is None else f"group-{pk}"


def components_of(page: StatusPage, snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The components, then each group as Statuspage lists it (a component with members)."""
    # When each was created, and when one of its monitors last changed state.
    times = {
        pk: (created, max(created, changed) if changed else created)
        for pk, created, changed in page.components.annotate(
            changed=Max("monitors__status_since")
        ).values_list("pk", "created_at", "changed")
    }
    fallback = (page.created_at, page.created_at)
    components = []
    for item in snapshot["components"]:
        created, updated = times.get(item["id"], fallback)
        components.append(
            {
                "id": str(item["id"]),
                "name": item["name"],
                "status": item["status"],
                "created_at": iso(created),
                "updated_at": iso(updated),
                "position": item["position"],
                "description": item["description"] or None,
                "showcase": item["show_uptime"],
                "start_date": created.date().isoformat(),
                "group_id": group_id(item["group_id"]),
                "page_id": str(page.pk),
                "group": False,
                "only_show_if_degraded": False,
            }
        )
    return components + groups_of(page, snapshot, components)


def groups_of(
    page: StatusPage, snapshot: dict[str, Any], components: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    groups = []
    for group in snapshot["groups"]:
        members = [c for c in components if c["group_id"] == group_id(group["id"])]
        groups.append(
            {
                "id": group_id(group["id"]),
                "name": group["name"],
                "status": worst(c["status"] for c in members),
                "created_at": min((c["created_at"] for c in members), default=iso(page.created_at)),
                "updated_at": max((c["updated_at"] for c in members), default=iso(page.created_at)),
                "position": group["position"],
                "description": None,
                "showcase": False,
                "start_date": None,
                "group_id": None,
                "page_id": str(page.pk),
                "group": True,
                "only_show_if_degraded": False,
                "components": [c["id"] for c in members],
            }
        )
    return groups


def incident_of(
    page: StatusPage, item: dict[str, Any], components: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    updates = item["updates"]  # newest first
    monitoring = [u["created_at"] for u in updates if u["status"] == "monitoring"]
    return {
        "id": str(item["id"]),
        "name": item["title"],
        "status": item["status"],
        "impact": item["impact"],
        "created_at": item["created_at"],
        "updated_at": item["updated_at"],
        "started_at": item["created_at"],
        "monitoring_at": min(monitoring) if monitoring else None,
        "resolved_at": item["resolved_at"],
        "shortlink": incident_url(page, item["id"]),
        "page_id": str(page.pk),
        "incident_updates": [
            update_of(item["id"], update, len(updates) - n) for n, update in enumerate(updates)
        ],
        "components": [components[str(pk)] for pk in item["components"] if str(pk) in components],
    }


def update_of(incident_id: int, update: dict[str, Any], number: int) -> dict[str, Any]:
    # The snapshot's updates may carry no id: then "<incident>-<n>", n counted from the first.
    update_id = update.get("id") or f"{incident_id}-{number}"
    return {
        "id": str(update_id),
        "incident_id": str(incident_id),
        "status": update["status"],
        "body": update["body"],
        "created_at": update["created_at"],
        "updated_at": update["created_at"],
        "display_at": update["created_at"],
    }


def maintenance_of(
    page: StatusPage, item: dict[str, Any], components: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    # One id per occurrence: a recurring window appears once per time it happens.
    occurrence = f"{item['id']}-{int(datetime.fromisoformat(item['scheduled_for']).timestamp())}"
    updates = []
    if item["description"]:
        updates.append(
            {
                "id": f"{occurrence}-1",
                "incident_id": occurrence,
                "status": item["status"],
                "body": item["description"],
                "created_at": item["scheduled_for"],
                "updated_at": item["scheduled_for"],
                "display_at": item["scheduled_for"],
            }
        )
    return {
        "id": occurrence,
        "name": item["title"],
        "status": item["status"],
        "impact": "maintenance",
        "created_at": item["scheduled_for"],
        "updated_at": item["scheduled_for"],
        "started_at": item["scheduled_for"],
        "monitoring_at": None,
        "resolved_at": None,
        "shortlink": page_url(page),
        "page_id": str(page.pk),
        "scheduled_for": item["scheduled_for"],
        "scheduled_until": item["scheduled_until"],
        "incident_updates": updates,
        # Only this page's components (a window may cover other pages' too).
        "components": [components[str(pk)] for pk in item["components"] if str(pk) in components],
    }
