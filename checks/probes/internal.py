"""Monitors of Watchpost itself (the "Watchpost fleet"): judged by checks.fleet, never probed."""

from __future__ import annotations

from typing import Any

from checks.probes.base import Observation, OptionErrors, Options, Probe, ProbeSpec

KNOWN: set[str] = set()


class InternalProbe(Probe):
    kind = "internal"

    def validate(self, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        errors = OptionErrors()
        if target:
            errors.target("must be blank: Watchpost judges itself")
        Options(options, KNOWN, errors)
        errors.raise_if_any()
        return target, options

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        return Observation.failed("Watchpost's own monitors are judged by the fleet, not probed")


PROBE = InternalProbe()
