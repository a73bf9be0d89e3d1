"""Validators for what users type about people and destinations."""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError


def validate_e164(value: str) -> None:
    """A phone number in E.164 form (+ country code, digits only) that is a valid number."""
    if not value.startswith("+") or not value[1:].isdigit():
        raise ValidationError(
            f"{value!r} is not in E.164 form: write + then the country code and number, "
            "digits only, e.g. +14155550123"
        )
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(f"{value!r} is not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(f"{value!r} is not a valid phone number for its country code")
