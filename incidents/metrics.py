"""Numbers the incidents app contributes to /metrics."""

from __future__ import annotations


def open_incident_count() -> int:
    """Incidents not yet resolved.

    Zero until the Incident model lands with the incidents work; the gauge is
    exported now so dashboards and alert rules can be written against it.
    """
    return 0
