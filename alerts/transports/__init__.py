"""Notification transports, one module per kind, and the registry that finds them."""

from __future__ import annotations
