"""Status page listeners: a change anything public depends on invalidates the cached pages.

Each listener bumps a generation (incidents.statuspage.cache); the next visitor
gets a fresh render. Bulk writes (QuerySet.update, bulk_create) send no model
signals: code that changes public state that way calls `invalidate` itself, and
the cache's TTL catches the rest.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from checks.models import Monitor
from checks.signals import status_changes_recorded
from incidents.models import (
    Component,
    ComponentGroup,
    Maintenance,
    PublicIncident,
    PublicUpdate,
    StatusPage,
)
from incidents.statuspage.cache import invalidate, invalidate_hosts, invalidate_on_commit


@receiver(status_changes_recorded)
def monitors_changed(**_: Any) -> None:
    # Sent after commit, and any page may show any monitor: bump them all.
    invalidate()


@receiver(post_save, sender=StatusPage)
@receiver(post_delete, sender=StatusPage)
def page_changed(instance: StatusPage, **_: Any) -> None:
    invalidate_hosts()
    invalidate_on_commit(instance.pk)


@receiver(post_save, sender=ComponentGroup)
@receiver(post_delete, sender=ComponentGroup)
@receiver(post_save, sender=Component)
@receiver(post_delete, sender=Component)
@receiver(post_save, sender=PublicIncident)
@receiver(post_delete, sender=PublicIncident)
def part_changed(instance: ComponentGroup | Component | PublicIncident, **_: Any) -> None:
    invalidate_on_commit(instance.page_id)


@receiver(post_save, sender=PublicUpdate)
@receiver(post_delete, sender=PublicUpdate)
def update_changed(instance: PublicUpdate, **_: Any) -> None:
    page_id = (
        PublicIncident.objects.filter(pk=instance.incident_id)
        .values_list("page_id", flat=True)
        .first()
    )
    invalidate_on_commit(page_id)  # None (incident gone): every page, to be safe


@receiver(m2m_changed, sender=Component.monitors.through)
@receiver(m2m_changed, sender=PublicIncident.components.through)
@receiver(m2m_changed, sender=Maintenance.components.through)
@receiver(m2m_changed, sender=Maintenance.monitors.through)
@receiver(m2m_changed, sender=Maintenance.tags.through)
def links_changed(action: str, **_: Any) -> None:
    if action.startswith("post_"):
        invalidate_on_commit()


@receiver(post_save, sender=Maintenance)
@receiver(post_delete, sender=Maintenance)
@receiver(post_delete, sender=Monitor)
def shared_changed(**_: Any) -> None:
    # A window can cover components of several pages; a deleted monitor leaves
    # its components without telling them (cascades send no m2m_changed).
    invalidate_on_commit()
