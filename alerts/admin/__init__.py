"""Admin for alerting, one module per area."""

from __future__ import annotations

from alerts.admin import channels, oncall, policies  # noqa: F401  (registers the admins)
