"""SVG badges per component, in the shields.io "flat" style: "API | operational", "API | 99.95%".

Embedded in READMEs and dashboards, fetched through image proxies: cacheable
for a minute, no script, every text XML-escaped, widths from the text.
"""

from __future__ import annotations

import math
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.utils.html import escape
from django.views.decorators.http import require_safe

from incidents.models import ComponentStatus, StatusPage
from incidents.statuspage.derive import UPTIME_WINDOWS
from incidents.statuspage.pages import cached, page_for, snapshot_for

CACHE_CONTROL = "public, max-age=60"
# An SVG opened on its own is a document: it may run nothing.
BADGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
DEFAULT_WINDOW = "30d"
LABEL_COLOUR = "#555"
STATUS_COLOURS = {
    ComponentStatus.OPERATIONAL: "#4c1",  # shields' brightgreen
    ComponentStatus.DEGRADED_PERFORMANCE: "#dfb317",  # yellow
    ComponentStatus.PARTIAL_OUTAGE: "#fe7d37",  # orange
    ComponentStatus.MAJOR_OUTAGE: "#e05d44",  # red
    ComponentStatus.UNDER_MAINTENANCE: "#007ec6",  # blue
}
NO_DATA_COLOUR = "#9f9f9f"
# Uptime at or above each threshold gets the colour (shields' scale).
UPTIME_COLOURS = [(99.9, "#4c1"), (99.0, "#97ca00"), (95.0, "#dfb317"), (90.0, "#fe7d37")]
NAME_LIMIT = 60
# Verdana 11px advance widths (as shields measures), for the characters that
# differ most from the average; everything else counts as AVERAGE.
NARROW = dict.fromkeys("il.,:;|!'`I", 3.9)
MEDIUM = dict.fromkeys("fjrt()[]/ -", 4.9)
WIDE = dict.fromkeys("mwMW%@", 10.0)
UPPER = 7.5
AVERAGE = 6.9
PADDING = 10


def text_width(text: str) -> int:
    width = 0.0
    for char in text:
        if char in NARROW:
            width += NARROW[char]
        elif char in MEDIUM:
            width += MEDIUM[char]
        elif char in WIDE:
            width += WIDE[char]
        elif char.isupper():
            width += UPPER
        else:
            width += AVERAGE
    return math.ceil(width)


def svg(label: str, message: str, colour: str) -> str:
    """A flat two-part badge; both texts are escaped here, and nowhere else."""
    if len(label) > NAME_LIMIT:
        label = label[: NAME_LIMIT - 1] + "…"
    left, right = text_width(label) + PADDING, text_width(message) + PADDING
    total = left + right
    title = escape(f"{label}: {message}")
    label_e, message_e = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="{LABEL_COLOUR}"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<rect width="{total}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" '
        'font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2:g}" y="15" fill="#010101" fill-opacity=".3">{label_e}</text>'
        f'<text x="{left / 2:g}" y="14">{label_e}</text>'
        f'<text x="{left + right / 2:g}" y="15" fill="#010101" fill-opacity=".3">{message_e}</text>'
        f'<text x="{left + right / 2:g}" y="14">{message_e}</text></g></svg>'
    )


def badge_response(label: str, message: str, colour: str) -> HttpResponse:
    response = HttpResponse(
        svg(label, message, colour), content_type="image/svg+xml; charset=utf-8"
    )
    response["Cache-Control"] = CACHE_CONTROL
    return response


def with_headers(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = BADGE_CSP
    return response


def component_of(snapshot: dict[str, Any], component_id: int) -> dict[str, Any]:
    for component in snapshot["components"]:
        if component["id"] == component_id:
            return component
    raise Http404("no such component on this page")


def uptime_text(value: float) -> str:
    """Rounded down, so 99.996 never shows as 100%: "100%", "99.95%", "99.9%"."""
    shown = math.floor(value * 100) / 100
    return f"{shown:.2f}".rstrip("0").rstrip(".") + "%"


def uptime_colour(value: float | None) -> str:
    if value is None:
        return NO_DATA_COLOUR
    for threshold, colour in UPTIME_COLOURS:
        if value >= threshold:
            return colour
    return STATUS_COLOURS[ComponentStatus.MAJOR_OUTAGE]


def page_with(request: HttpRequest, component_id: int) -> StatusPage:
    """The request's page, if the component is on it (checked before the cache is asked,
    so made-up ids cost one indexed query, never a page render)."""
    page = page_for(request)
    if not page.components.filter(pk=component_id).exists():
        raise Http404("no such component on this page")
    return page


@require_safe
def status_badge(request: HttpRequest, component_id: int) -> HttpResponse:
    page = page_with(request, component_id)

    def render() -> HttpResponse:
        component = component_of(snapshot_for(request, page), component_id)
        status = component["status"]
        message = ComponentStatus(status).label.lower()
        return badge_response(component["name"], message, STATUS_COLOURS[status])

    return with_headers(cached(request, page, f"badge:status:{component_id}", render))


@require_safe
def uptime_badge(request: HttpRequest, component_id: int) -> HttpResponse:
    page = page_with(request, component_id)
    window = request.GET.get("window", DEFAULT_WINDOW)
    if window not in UPTIME_WINDOWS:
        allowed = ", ".join(UPTIME_WINDOWS)
        return HttpResponse(
            f"window: must be one of {allowed}", status=400, content_type="text/plain"
        )

    def render() -> HttpResponse:
        component = component_of(snapshot_for(request, page), component_id)
        if not component["show_uptime"]:
            raise Http404("this component's uptime is not public")
        value = component["uptime"].get(window)
        message = "no data" if value is None else uptime_text(value)
        return badge_response(component["name"], message, uptime_colour(value))

    # `window` is one of four known values here: a bounded number of cache entries.
    return with_headers(cached(request, page, f"badge:uptime:{component_id}:{window}", render))
