"""Signals the incidents services send after commit, for listeners such as the status page."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

# Both are sent with `incident` (an Incident) once the transaction commits.
incident_opened = Signal()
incident_resolved = Signal()


def send_on_commit(signal: Signal, incident: object) -> None:
    transaction.on_commit(lambda: signal.send(sender=None, incident=incident), robust=True)
