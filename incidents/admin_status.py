"""Admin: status pages, components, public incidents and subscribers."""

from __future__ import annotations
