"""Reading settings from the environment, failing loudly on a bad value.

Every reader names the variable in its error, so a typo in a deployment stops
start-up with one readable line instead of a misbehaving process.
"""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Env:
    """Typed access to a mapping of environment variables."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        """The value of NAME, or of the file named by NAME_FILE (for secrets)."""
        value = self.environ.get(name)
        file_name = self.environ.get(f"{name}_FILE")
        if value is not None and file_name:
            raise ImproperlyConfigured(f"{name}: set either {name} or {name}_FILE, not both")
        if file_name:
            try:
                return Path(file_name).read_text().strip()
            except OSError as exc:
                raise ImproperlyConfigured(
                    f"{name}_FILE: cannot read {file_name!r} ({exc.strerror})"
                ) from exc
        return value

    def str(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value.strip()

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ImproperlyConfigured(f"{name}: expected true or false, got {value!r}")

    def int(self, name: str, default: int, minimum: int | None = None) -> int:
        value = self.raw(name)
        if value is None or not value.strip():
            return default
        try:
            number = int(value.strip())
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: expected a whole number, got {value!r}") from exc
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {number}")
        return number

    def float(self, name: str, default: float, low: float, high: float) -> float:
        value = self.raw(name)
        if value is None or not value.strip():
            return default
        try:
            number = float(value.strip())
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: expected a number, got {value!r}") from exc
        if not low <= number <= high:
            raise ImproperlyConfigured(f"{name}: must be between {low} and {high}, got {number}")
        return number

    def list(self, name: str, default: list[str]) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def choice(self, name: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
        value = self.str(name, default)
        value = value.upper() if upper else value.lower()
        if value not in choices:
            raise ImproperlyConfigured(
                f"{name}: expected one of {', '.join(choices)}, got {value!r}"
            )
        return value

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        value = self.str(name, default)
        if not value:
            return value
        parts = urlsplit(value)
        scheme = parts.scheme.split("+")[-1] if parts.scheme.startswith("sqla+") else parts.scheme
        if scheme not in schemes:
            raise ImproperlyConfigured(
                f"{name}: scheme must be one of {', '.join(s + '://' for s in schemes)}, "
                f"got {redact_url(value)!r}"
            )
        if scheme in {"http", "https", "redis", "rediss", "postgres", "postgresql"} and (
            not parts.hostname
        ):
            raise ImproperlyConfigured(f"{name}: no host in {redact_url(value)!r}")
        return value

    def timezone(self, name: str, default: str) -> str:
        value = self.str(name, default)
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"{name}: unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from exc
        return value


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
