"""Form pieces the apps' admins share."""

from __future__ import annotations

import json
from typing import Any

from django import forms


class AsTyped(str):
    """Text the user submitted, shown back exactly as typed."""


class PrettyJSONField(forms.JSONField):
    """Stored JSON shown indented; a form shown again with errors shows what the user typed."""

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled or data is None:
            return super().bound_data(data, initial)
        return AsTyped(data)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, AsTyped | forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)
