"""Signals the alerts app sends; other apps listen without alerts importing them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent once per notification when its delivery is over, sent or failed, after
# the transaction that recorded the outcome commits:
#   notification_finished.send(sender=Notification, notification=row)
# The row (status, attempts, last_error, sent_at) is the record; the incidents
# app writes it into the incident's timeline.
notification_finished = Signal()
