"""The probe registry: one module per kind, loaded when first used."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from django.core.exceptions import ValidationError

from checks.probes.base import Probe

PROBE_MODULES = {
    "http": "checks.probes.http",
    "tcp": "checks.probes.tcp",
    "dns": "checks.probes.dns",
    "tls": "checks.probes.tls",
    "postgres": "checks.probes.postgres",
    "redis": "checks.probes.redis",
    "prometheus": "checks.probes.prometheus",
    "websocket": "checks.probes.websocket",
    "heartbeat": "checks.probes.heartbeat",
    "internal": "checks.probes.internal",
}


@cache
def get_probe(kind: str) -> Probe:
    try:
        module = importlib.import_module(PROBE_MODULES[kind])
    except KeyError:
        raise ValidationError({"kind": [f"unknown kind {kind!r}"]}) from None
    except ModuleNotFoundError as exc:
        if exc.name != PROBE_MODULES[kind]:
            raise
        raise ValidationError({"kind": [f"the {kind} probe is not available yet"]}) from None
    return module.PROBE


def validate_monitor(kind: str, target: str, options: Any) -> tuple[str, dict[str, Any]]:
    """Clean a monitor's target and options for its kind; errors name the field."""
    return get_probe(kind).validate((target or "").strip(), options)
