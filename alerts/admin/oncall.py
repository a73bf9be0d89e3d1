"""Admin: oncall."""

from __future__ import annotations
