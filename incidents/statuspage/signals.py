"""Status page listeners: cache invalidation and auto-publishing."""

from __future__ import annotations
