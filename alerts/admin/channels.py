"""Admin: channels."""

from __future__ import annotations
