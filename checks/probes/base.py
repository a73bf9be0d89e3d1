"""The small interface every probe kind implements.

A probe observes; it does not judge. `observe` returns what it measured (by
source: status code, latency, body, certificate days, a metric's value...) or
the error that stopped it. The assertion engine (checks.assertions) turns an
observation and the monitor's rules into ok / warning / critical / error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ValidationError

if TYPE_CHECKING:
    from checks.assertions import Rule


@dataclass(frozen=True)
class ProbeSpec:
    """Everything one probe run needs: plain data, never a model instance."""

    monitor_id: int
    kind: str
    target: str
    options: dict[str, Any]
    timeout: float
    memory: dict[str, Any] = field(default_factory=dict)


@dataclass
class Observation:
    values: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None
    error: str | None = None
    summary: str = ""
    # Critical findings the probe states in its own words ("certificate is for
    # other.example, not api.example"), judged critical whatever the rules say.
    problems: list[str] = field(default_factory=list)
    # Small facts worth keeping with the result (resolved address, issuer).
    info: dict[str, Any] = field(default_factory=dict)
    # Carried to this monitor's next run from the same region.
    memory: dict[str, Any] | None = None

    @classmethod
    def failed(cls, error: str, latency_ms: float | None = None) -> Observation:
        return cls(error=error, latency_ms=latency_ms)


class Probe:
    """One probe kind. Subclasses set `kind` and implement `observe`."""

    kind: ClassVar[str]
    target_label: ClassVar[str] = "target"

    def parse(self, target: str, options: Any, errors: OptionErrors) -> Any:
        """Read the target and options into the kind's config, noting each problem in `errors`.

        Kinds set this to their module's `parse` (one reader serves validation
        and probing alike).
        """
        return None

    def validate(self, target: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Clean the target and options; raise ValidationError naming the field."""
        errors = OptionErrors()
        self.parse(target, options, errors)
        errors.raise_if_any()
        return target, options

    def implicit_rules(self, spec: ProbeSpec) -> list[Rule]:
        """Rules the kind's own options imply (accepted status codes, keywords...)."""
        return []

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        raise NotImplementedError


class OptionErrors:
    """Collects problems with a monitor's target and options, to report all at once.

    Errors are keyed by the model field (`target` or `options`) so the admin
    form shows them beside the right box; each option's message starts with
    the option's name.
    """

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def target(self, message: str) -> None:
        self.errors.setdefault("target", []).append(message)

    def option(self, name: str, message: str) -> None:
        self.errors.setdefault("options", []).append(f"{name}: {message}")

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


_MISSING = object()


class Options:
    """Reads a kind's options, checking each one's type and range, and unknown names."""

    def __init__(self, raw: Any, known: set[str], errors: OptionErrors) -> None:
        self.errors = errors
        self.cleaned: dict[str, Any] = {}
        if raw in (None, ""):
            raw = {}
        if not isinstance(raw, dict):
            errors.errors.setdefault("options", []).append("must be a JSON object")
            raw = {}
        self.raw = raw
        for name in sorted(set(raw) - known):
            errors.option(name, f"unknown option (known: {', '.join(sorted(known))})")

    def _get(self, name: str) -> Any:
        return self.raw.get(name, _MISSING)

    def str(self, name: str, default: str | None = None, choices: tuple[str, ...] = ()) -> Any:
        value = self._get(name)
        if value is _MISSING or value is None or value == "":
            return self._keep(name, default)
        if not isinstance(value, str):
            self.errors.option(name, "must be text")
            return default
        if choices and value not in choices:
            self.errors.option(name, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return self._keep(name, value)

    def bool(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is _MISSING or value is None:
            return self._keep(name, default)
        if not isinstance(value, bool):
            self.errors.option(name, "must be true or false")
            return default
        return self._keep(name, value)

    def number(
        self, name: str, default: float | None, low: float, high: float, integer: bool = False
    ) -> Any:
        value = self._get(name)
        if value is _MISSING or value is None or value == "":
            return self._keep(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                value = float(value) if not integer else int(value)
            except (TypeError, ValueError):
                self.errors.option(name, f"must be a number, got {value!r}")
                return default
        if integer and value != int(value):
            self.errors.option(name, f"must be a whole number, got {value!r}")
            return default
        if not low <= value <= high:
            self.errors.option(name, f"must be between {low:g} and {high:g}, got {value:g}")
            return default
        return self._keep(name, int(value) if integer else value)

    def mapping(self, name: str) -> dict[str, str]:
        value = self._get(name)
        if value is _MISSING or value is None or value == {}:
            return self._keep(name, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self.errors.option(name, 'must be an object of text values, e.g. {"X-Token": "abc"}')
            return {}
        return self._keep(name, value)

    def list(self, name: str) -> list[Any]:
        value = self._get(name)
        if value is _MISSING or value is None:
            return self._keep(name, [])
        if not isinstance(value, list):
            self.errors.option(name, "must be a list")
            return []
        return self._keep(name, value)

    def _keep(self, name: str, value: Any) -> Any:
        if value is not None and name in self.raw:
            self.cleaned[name] = value
        return value
