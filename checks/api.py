"""The JSON API for monitors (/api/v1/).

Writes go through the same rules as the admin: the serializer runs
Monitor.clean() (kind, target and options per probe; timeout below interval;
no dependency loops) and Assertion.clean(), and answers 400 keyed by the field.
Pausing goes through services.set_paused so it writes its StatusChange.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from checks.models import Assertion, Monitor, Outcome, Region, Tag
from checks.services import ManualRun, evaluate_now, set_paused

logger = logging.getLogger(__name__)


# --- Serializers -------------------------------------------------------------------------


def _raise_as_drf(exc: DjangoValidationError) -> None:
    detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    raise serializers.ValidationError(detail) from exc


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _reject_unstorable(value: Any, path: str = "options") -> None:
    """PostgreSQL cannot store NUL or lone surrogates; say so rather than fail with a 500."""
    if isinstance(value, str) and UNSTORABLE.search(value):
        raise serializers.ValidationError(
            f"{path}: must not contain NUL characters or lone surrogates"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_unstorable(key, path)
            _reject_unstorable(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            _reject_unstorable(item, path)


class AssertionSerializer(serializers.ModelSerializer[Assertion]):
    # Writable so an update can name the assertion it changes; without it, a new one.
    id = serializers.IntegerField(required=False)

    class Meta:
        model = Assertion
        fields = [
            "id", "order", "source", "selector", "operator", "warning_value",
            "critical_value", "aggregate", "window",
        ]  # fmt: skip

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A PATCH of the monitor skips missing fields everywhere below it; an
        # assertion is still only ever written whole.
        missing = {name: ["This field is required."] for name in ("source", "operator")
                   if name not in attrs}  # fmt: skip
        if missing:
            raise serializers.ValidationError(missing)
        assertion = Assertion(**{k: v for k, v in attrs.items() if k != "id"})
        try:
            assertion.clean()
        except DjangoValidationError as exc:
            _raise_as_drf(exc)
        return attrs


@extend_schema_field({"type": "array", "items": {"type": "string", "pattern": r"^[-a-zA-Z0-9_]+$"}})
class TagNamesField(serializers.ListField):
    """Tags by name; a name not seen before makes a new tag."""

    child = serializers.SlugField(max_length=50)

    def to_representation(self, data: Any) -> list[str]:
        return [tag.name for tag in data.all()]


STATE_FIELDS = [
    "status", "status_since", "last_checked_at", "last_latency_ms", "last_reason",
    "next_check_at", "ping_key", "created_at", "updated_at",
]  # fmt: skip


class MonitorSerializer(serializers.ModelSerializer[Monitor]):
    options = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="Options of the kind (see the admin's help for each kind)",
    )
    tags = TagNamesField(required=False)
    regions = serializers.SlugRelatedField(
        many=True, slug_field="name", queryset=Region.objects.all(), required=False
    )
    assertions = AssertionSerializer(many=True, required=False)
    paused = serializers.BooleanField(
        required=False, help_text="paused monitors are not probed and page no one"
    )

    class Meta:
        model = Monitor
        fields = [
            "id", "name", "kind", "target", "options", "interval", "timeout",
            "failure_threshold", "recovery_threshold", "paused", "severity", "description",
            "runbook_url", "depends_on", "regions", "confirm_regions", "tags", "assertions",
            *STATE_FIELDS,
        ]  # fmt: skip
        read_only_fields = STATE_FIELDS

    def validate_options(self, value: dict[str, Any]) -> dict[str, Any]:
        _reject_unstorable(value)
        return value

    def validate_assertions(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [item["id"] for item in items if "id" in item]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("an assertion id appears twice")
        if self.instance is not None:
            own = set(self.instance.assertions.values_list("id", flat=True))
            strangers = sorted(set(ids) - own)
            if strangers:
                raise serializers.ValidationError(
                    f"assertion {strangers[0]} does not belong to this monitor"
                )
        return items

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Run Monitor.clean() on the monitor as it would be saved."""
        candidate = copy.copy(self.instance) if self.instance is not None else Monitor()
        for name, value in attrs.items():
            if name not in ("tags", "regions", "assertions", "paused"):
                setattr(candidate, name, value)
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            _raise_as_drf(exc)
        # clean() normalises the target and options for the kind.
        if "target" in attrs or "kind" in attrs:
            attrs["target"] = candidate.target
        if "options" in attrs or "kind" in attrs:
            attrs["options"] = candidate.options
        return attrs

    @transaction.atomic
    def create(self, validated_data: dict[str, Any]) -> Monitor:
        related = self._pop_related(validated_data)
        paused = validated_data.pop("paused", False)
        if validated_data.get("kind") == Monitor.Kind.HEARTBEAT:
            # A missed deadline already carries its grace period: one is down.
            validated_data.setdefault("failure_threshold", 1)
        monitor = Monitor.objects.create(**validated_data)
        self._save_related(monitor, related)
        if paused:
            set_paused([monitor.pk], True)
            monitor.refresh_from_db()
        return monitor

    @transaction.atomic
    def update(self, instance: Monitor, validated_data: dict[str, Any]) -> Monitor:
        related = self._pop_related(validated_data)
        paused = validated_data.pop("paused", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        # Only what the caller may edit: status and the last result belong to the
        # workers, which may have moved them since this request read the row.
        instance.save(update_fields=[*validated_data, "updated_at"])
        self._save_related(instance, related)
        if paused is not None and paused != instance.paused:
            set_paused([instance.pk], paused)
        instance.refresh_from_db()
        return instance

    def _pop_related(self, data: dict[str, Any]) -> dict[str, Any]:
        return {name: data.pop(name) for name in ("tags", "regions", "assertions") if name in data}

    def _save_related(self, monitor: Monitor, related: dict[str, Any]) -> None:
        if "tags" in related:
            monitor.tags.set([Tag.objects.get_or_create(name=name)[0] for name in related["tags"]])
        if "regions" in related:
            monitor.regions.set(related["regions"])
        if "assertions" in related:
            save_assertions(monitor, related["assertions"])


def save_assertions(monitor: Monitor, items: list[dict[str, Any]]) -> None:
    """Make the monitor's assertions exactly `items`, keeping the ids of those named.

    Ids are kept because a windowed rule's earlier values are stored under its id.
    """
    existing = {assertion.pk: assertion for assertion in monitor.assertions.all()}
    kept = []
    for position, item in enumerate(items):
        values = dict(item)
        assertion = existing.get(values.pop("id", None)) or Assertion(monitor=monitor)
        values.setdefault("order", position)
        for name, value in values.items():
            setattr(assertion, name, value)
        assertion.save()
        kept.append(assertion.pk)
    monitor.assertions.exclude(pk__in=kept).delete()


class ManualRunSerializer(serializers.Serializer[ManualRun]):
    monitor = serializers.IntegerField(source="monitor.pk")
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    reason = serializers.CharField()
    latency_ms = serializers.FloatField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)


# --- Views -----------------------------------------------------------------------------


class MonitorFilterSerializer(serializers.Serializer[dict[str, str]]):
    """The list's query parameters; a bad value answers 400 naming the parameter."""

    kind = serializers.ChoiceField(choices=Monitor.Kind.choices, required=False)
    status = serializers.ChoiceField(choices=Monitor.Status.choices, required=False)
    tag = serializers.SlugField(max_length=50, required=False, help_text="a tag's name")


ERROR_DETAIL = inline_serializer("ErrorDetail", {"detail": serializers.CharField()})
DENIED = {
    401: OpenApiResponse(ERROR_DETAIL, description="no token, or an unknown one"),
    403: OpenApiResponse(ERROR_DETAIL, description="the user is not staff"),
}
NOT_FOUND = {404: OpenApiResponse(ERROR_DETAIL, description="no such monitor")}
INVALID = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description='Messages by field, e.g. {"options": ["method: must be one of GET, ..."]}',
    )
}


@extend_schema(tags=["monitors"])
@extend_schema_view(
    list=extend_schema(
        parameters=[MonitorFilterSerializer],
        responses={200: MonitorSerializer(many=True), **INVALID, **DENIED},
    ),
    create=extend_schema(responses={201: MonitorSerializer, **INVALID, **DENIED}),
    retrieve=extend_schema(responses={200: MonitorSerializer, **DENIED, **NOT_FOUND}),
    update=extend_schema(responses={200: MonitorSerializer, **INVALID, **DENIED, **NOT_FOUND}),
    partial_update=extend_schema(
        responses={200: MonitorSerializer, **INVALID, **DENIED, **NOT_FOUND}
    ),
    destroy=extend_schema(responses={204: None, **DENIED, **NOT_FOUND}),
)
class MonitorViewSet(viewsets.ModelViewSet[Monitor]):
    serializer_class = MonitorSerializer

    def get_queryset(self) -> QuerySet[Monitor]:
        monitors = Monitor.objects.prefetch_related("tags", "regions", "assertions")
        return monitors.order_by("name", "id")

    def filter_queryset(self, queryset: QuerySet[Monitor]) -> QuerySet[Monitor]:
        if self.action != "list":
            return queryset
        filters = MonitorFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        if "kind" in wanted:
            queryset = queryset.filter(kind=wanted["kind"])
        if "status" in wanted:
            queryset = queryset.filter(status=wanted["status"])
        if "tag" in wanted:
            queryset = queryset.filter(tags__name=wanted["tag"])
        return queryset

    @extend_schema(
        operation_id="monitors_run",
        summary="Probe and judge the monitor now (manual evaluate); nothing is stored",
        request=None,
        responses={200: ManualRunSerializer, **DENIED, **NOT_FOUND},
    )
    def run(self, request: Request, pk: str | None = None) -> Response:
        monitor = self.get_object()
        [result] = evaluate_now([monitor])
        return Response(ManualRunSerializer(result).data, status=status.HTTP_200_OK)
