"""Signals the checks app sends; other apps listen without checks importing them."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

# Sent after a transaction that wrote StatusChange rows commits. Receivers
# read the unprocessed rows themselves (the rows, not the signal, are the
# record: a receiver that misses the signal finds them on its next sweep).
status_changes_recorded = Signal()


def announce_status_changes() -> None:
    """Tell listeners, once the current transaction commits, that there are new changes."""
    transaction.on_commit(lambda: status_changes_recorded.send(sender=None), robust=True)
