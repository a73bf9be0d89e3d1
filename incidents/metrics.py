"""Numbers the incidents app contributes to /metrics."""

from __future__ import annotations


def open_incident_count() -> int:
    """Incidents not yet resolved."""
    from incidents.models import Incident

    return Incident.objects.open().count()
