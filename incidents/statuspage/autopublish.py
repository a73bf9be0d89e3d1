"""Publishing incidents on status pages by themselves, for components with auto_publish.

When an internal incident opens, every page with an auto-publishing component
fed by its monitor gets one public incident (the database holds "one per page
and internal incident", so a second run, or two workers, publish once), with
an "investigating" update. When the internal incident resolves, the public
incidents linked to it get a "resolved" update.

Public words only: titles and bodies are built from component names and
statuses, never from the monitor's name, target or failure reason.
Connected by importing this module from IncidentsConfig.ready().
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from django.db import IntegrityError, transaction
from django.dispatch import receiver
from django.utils import timezone

from incidents.events import incident_opened, incident_resolved
from incidents.models import Component, ComponentStatus, Incident, PublicIncident, StatusPage
from incidents.statuspage import derive, publishing

logger = logging.getLogger(__name__)

AUTHOR = "Watchpost (automatic)"
TITLE_LIMIT = 300
# What a component's status is called in a title, and the incident's impact.
WORDS = {
    ComponentStatus.DEGRADED_PERFORMANCE: ("degraded performance", PublicIncident.Impact.MINOR),
    ComponentStatus.PARTIAL_OUTAGE: ("partial outage", PublicIncident.Impact.MAJOR),
    ComponentStatus.MAJOR_OUTAGE: ("outage", PublicIncident.Impact.CRITICAL),
}
INVESTIGATING = "We are investigating issues affecting {components}."
RECURRED = "The issues affecting {components} have come back; we are investigating."
RESOLVED = "This incident has been resolved."


@receiver(incident_opened, dispatch_uid="statuspage-autopublish-opened")
def on_incident_opened(sender: Any, incident: Incident, **kwargs: Any) -> None:
    # A status page problem must not stop the other listeners of the signal.
    try:
        publish_opened(incident)
    except Exception:
        logger.exception("auto-publishing incident %s on status pages failed", incident.pk)


@receiver(incident_resolved, dispatch_uid="statuspage-autopublish-resolved")
def on_incident_resolved(sender: Any, incident: Incident, **kwargs: Any) -> None:
    try:
        publish_resolved(incident)
    except Exception:
        logger.exception("resolving incident %s on status pages failed", incident.pk)


def publish_opened(incident: Incident) -> list[PublicIncident]:
    """One public incident per page with an auto-publishing component fed by the monitor."""
    if incident.monitor_id is None or incident.suppression == Incident.Suppression.MAINTENANCE:
        return []  # announced maintenance already tells the public
    components = (
        Component.objects.filter(auto_publish=True, monitors=incident.monitor_id)
        .select_related("page")
        .prefetch_related("monitors")
        .order_by("page_id", "position", "id")
    )
    by_page: dict[int, list[Component]] = defaultdict(list)
    for component in components:
        by_page[component.page_id].append(component)
    published = []
    for page_components in by_page.values():
        made = publish_on_page(incident, page_components[0].page, page_components)
        if made is not None:
            published.append(made)
    return published


def publish_on_page(
    incident: Incident, page: StatusPage, components: list[Component]
) -> PublicIncident | None:
    names = components_named(components)
    existing = PublicIncident.objects.filter(page=page, incident=incident).first()
    if existing is not None:
        if existing.is_published and existing.status == PublicIncident.Status.RESOLVED:
            # The internal incident re-opened: so does the public one, not a second one.
            publishing.post_update(
                existing, PublicIncident.Status.INVESTIGATING,
                RECURRED.format(components=names), AUTHOR,
            )  # fmt: skip
        return None
    words, impact = WORDS[status_of(components)]
    try:
        with transaction.atomic():
            public = PublicIncident.objects.create(
                page=page, title=f"{names} — {words}"[:TITLE_LIMIT], impact=impact,
                incident=incident, created_at=timezone.now(),
            )  # fmt: skip
            public.components.set(components)
            publishing.post_update(
                public, PublicIncident.Status.INVESTIGATING,
                INVESTIGATING.format(components=names), AUTHOR,
            )  # fmt: skip
    except IntegrityError:
        return None  # published by another run meanwhile (the unique constraint)
    logger.info("incident %s auto-published on %s as %s", incident.pk, page.host, public.pk)
    return public


def status_of(components: list[Component]) -> str:
    """What the monitors say (overrides and maintenance aside): at least degraded."""
    statuses = [derive.monitor_status([m.status for m in c.monitors.all()]) for c in components]
    status = derive.worst(statuses)
    return status if status in WORDS else ComponentStatus.DEGRADED_PERFORMANCE


def publish_resolved(incident: Incident) -> int:
    """A "resolved" update on each published public incident of this one still open."""
    public = PublicIncident.objects.filter(incident=incident, published_at__isnull=False).exclude(
        status=PublicIncident.Status.RESOLVED
    )
    count = 0
    for item in public:
        publishing.post_update(item, PublicIncident.Status.RESOLVED, RESOLVED, AUTHOR)
        count += 1
    return count


def components_named(components: list[Component]) -> str:
    """ "API", "API and Database", "API, Database and CDN"."""
    names = [c.name for c in components]
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"
